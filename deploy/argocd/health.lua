-- Argo CD health of a secretsync.io object: the one script behind every kind's check.
-- Progressing until the controller has reported on the object's current generation
-- (status.observedGeneration equals metadata.generation); then its CONDITION condition:
-- True is Healthy, False is Degraded with the controller's message (the reason word when
-- there is no message). Uses only the base and table libraries, which Argo CD gives every
-- argocd-cm health script (no resource.customizations.useOpenLibs needed).
-- deploy/argocd/generate.py writes it into argocd-cm.yaml once per kind, with CONDITION set.
local CONDITION = "Ready"
local hs = { status = "Progressing", message = "Waiting for the secretsync controller" }
local status = obj.status
if status == nil or status.conditions == nil then
  return hs
end
local generation = (obj.metadata or {}).generation
if generation ~= nil and status.observedGeneration ~= generation then
  hs.message = "Waiting for the secretsync controller to observe generation " .. generation
  return hs
end
for _, condition in ipairs(status.conditions) do
  if condition.type == CONDITION then
    if condition.observedGeneration ~= nil and generation ~= nil
        and condition.observedGeneration ~= generation then
      hs.message = "Waiting for the secretsync controller to observe generation " .. generation
    elseif condition.status == "True" then
      hs.status = "Healthy"
      hs.message = condition.message or ""
    elseif condition.status == "False" then
      hs.status = "Degraded"
      hs.message = condition.message
      if hs.message == nil or hs.message == "" then
        hs.message = condition.reason or (CONDITION .. "=False")
      end
    end
    return hs
  end
end
return hs
