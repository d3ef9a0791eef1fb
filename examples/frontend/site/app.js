// Reads the API through the same ALB (/api goes to the backend).
async function load() {
  const status = document.getElementById('status');
  try {
    const [users, version] = await Promise.all([
      fetch('/api/users').then(okJson),
      fetch('/api/version').then(okJson),
    ]);
    const list = document.getElementById('users');
    for (const user of users) {
      const item = document.createElement('li');
      item.textContent = user.name;
      list.appendChild(item);
    }
    document.getElementById('version').textContent = version.version;
    status.textContent = `${users.length} user(s)`;
  } catch (err) {
    status.textContent = `The API is unavailable (${err.message}).`;
  }
}

function okJson(res) {
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  return res.json();
}

load();
