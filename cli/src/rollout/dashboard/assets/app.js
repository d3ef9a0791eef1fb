// gantry rollout dashboard: the server renders every fragment; this only
// swaps in the updates it streams and sends the buttons' actions.
"use strict";

const live = document.getElementById("live");
const notice = document.getElementById("notice");
const connection = document.getElementById("connection");
const csrf = document.querySelector('meta[name="csrf-token"]').content;

function say(kind, text) {
  notice.className = kind;
  notice.textContent = text;
  notice.hidden = false;
}

const updates = new EventSource(live.dataset.updates);
updates.addEventListener("update", (e) => {
  live.innerHTML = e.data;
});
updates.onopen = () => {
  connection.textContent = "live";
  connection.className = "ok";
};
updates.onerror = () => {
  connection.textContent = "reconnecting…";
  connection.className = "warn";
};

document.addEventListener("click", async (e) => {
  const button = e.target.closest("button[data-action]");
  if (!button || button.disabled || !confirm(button.dataset.confirm)) {
    return;
  }
  button.disabled = true;
  try {
    const answer = await fetch(button.dataset.url, {
      method: "POST",
      headers: { "X-Gantry-CSRF": csrf },
    });
    say(answer.ok ? "ok" : "error", await answer.text());
  } catch (err) {
    say("error", `the dashboard did not answer: ${err}`);
  } finally {
    button.disabled = false;
  }
});
