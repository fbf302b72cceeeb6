-- Argo CD health of a lifeline.io RestorePlan (resource.customizations.health.lifeline.io_RestorePlan).
-- A warm standby holding its point (phase Standby) and a plan armed for heartbeat loss
-- (Ready/Armed) are Healthy: they are doing their job.
local function condition(obj, t)
  if obj.status == nil or obj.status.conditions == nil then return nil end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == t then return c end
  end
  return nil
end
if obj.status == nil then
  return {status = "Progressing", message = "Waiting for the operator"}
end
if obj.metadata.generation ~= nil and (obj.status.observedGeneration == nil or obj.status.observedGeneration < obj.metadata.generation) then
  return {status = "Progressing", message = "Waiting for the operator to apply the new spec"}
end
local phase = obj.status.phase
if phase == "Failed" then
  return {status = "Degraded", message = obj.status.message or "Failed"}
end
local degraded = condition(obj, "Degraded")
if degraded ~= nil and degraded.status == "True" then
  return {status = "Degraded", message = degraded.message or degraded.reason}
end
if phase == "Completed" or phase == "Standby" then
  return {status = "Healthy", message = obj.status.message or phase}
end
local ready = condition(obj, "Ready")
if ready ~= nil and ready.status == "True" then
  return {status = "Healthy", message = ready.message or ready.reason}
end
return {status = "Progressing", message = obj.status.message or phase or "Pending"}
