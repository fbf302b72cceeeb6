-- Argo CD health of a lifeline.io RestorePoint (resource.customizations.health.lifeline.io_RestorePoint).
if obj.status == nil or obj.status.phase == nil then
  return {status = "Progressing", message = "Waiting for the run to start"}
end
local phase = obj.status.phase
if phase == "Completed" then
  return {status = "Healthy", message = obj.status.message or "Completed"}
end
if phase == "Failed" then
  return {status = "Degraded", message = obj.status.message or "Failed"}
end
return {status = "Progressing", message = obj.status.message or phase}
