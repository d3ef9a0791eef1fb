-- Argo CD health of a gantry.dev Rollout, read from the status the
-- controller writes; the message is the line `gantry rollout status` prints.
local hs = {}
local status = obj.status or {}
local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= generation then
  -- A spec the controller has not seen yet: whatever the status says is old.
  hs.status = "Progressing"
  hs.message = "waiting for the controller to see generation " .. tostring(generation)
  return hs
end
local at = status.phase or "no status yet"
if status.stepDisplay ~= nil and (status.phase == "Progressing" or status.phase == "Paused") then
  at = at .. " at step " .. status.stepDisplay
end
if status.message ~= nil and status.message ~= "" then
  hs.message = at .. ": " .. status.message
else
  hs.message = at
end
if status.phase == "Healthy" then
  hs.status = "Healthy"
elseif status.phase == "Degraded" then
  -- Aborted, an invalid spec, failed analysis.
  hs.status = "Degraded"
elseif status.phase == "Paused" then
  -- Waiting for a person: promote, or resume after spec.paused.
  hs.status = "Suspended"
else
  hs.status = "Progressing"
end
return hs
