-- Argo CD health of a lifeline.io BackupPolicy (resource.customizations.health.lifeline.io_BackupPolicy).
-- A policy that stood down because another cluster took its workload over (Degraded with
-- reason Fenced) is Suspended, as is one suspended by spec: both are deliberate.
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
local degraded = condition(obj, "Degraded")
if degraded ~= nil and degraded.status == "True" then
  if degraded.reason == "Fenced" then
    return {status = "Suspended", message = degraded.message or "Fenced"}
  end
  return {status = "Degraded", message = degraded.message or degraded.reason}
end
if obj.spec ~= nil and obj.spec.suspend == true then
  return {status = "Suspended", message = "Suspended: no backups are taken"}
end
local ready = condition(obj, "Ready")
if ready ~= nil and ready.status == "True" then
  return {status = "Healthy", message = ready.message or "Protected"}
end
return {status = "Progressing", message = (ready ~= nil and ready.message) or "Waiting for the first restore point"}
