-- Argo CD health of a lifeline.io BackupLocation (resource.customizations.health.lifeline.io_BackupLocation).
local function condition(obj, t)
  if obj.status == nil or obj.status.conditions == nil then return nil end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == t then return c end
  end
  return nil
end
if obj.status == nil then
  return {status = "Progressing", message = "Waiting for the operator's first check"}
end
if obj.metadata.generation ~= nil and (obj.status.observedGeneration == nil or obj.status.observedGeneration < obj.metadata.generation) then
  return {status = "Progressing", message = "Waiting for the operator to check the new spec"}
end
local degraded = condition(obj, "Degraded")
if degraded ~= nil and degraded.status == "True" then
  return {status = "Degraded", message = degraded.message or degraded.reason}
end
local ready = condition(obj, "Ready")
if ready ~= nil and ready.status == "True" then
  return {status = "Healthy", message = ready.message or "Reachable"}
end
return {status = "Progressing", message = (ready ~= nil and ready.message) or "Checking the location"}
