-- Which actions make sense now; the same rules as `gantry rollout`, which
-- says why it refuses the others.
local actions = {}
local status = obj.status or {}
local paused = obj.spec.paused == true
local waiting = status.pauseConditions ~= nil and #status.pauseConditions > 0
local in_progress = status.currentPodHash ~= nil and status.currentPodHash ~= status.stableRS
local aborted = status.abort == true
local restarting = obj.spec.restartAt ~= nil and status.restartedAt ~= obj.spec.restartAt
actions["promote"] = {["disabled"] = aborted or not waiting}
actions["promote-full"] = {["disabled"] = aborted or not in_progress}
actions["abort"] = {["disabled"] = aborted or not in_progress}
actions["retry"] = {["disabled"] = not aborted}
actions["pause"] = {["disabled"] = paused}
actions["resume"] = {["disabled"] = not paused}
actions["restart"] = {["disabled"] = restarting}
return actions
