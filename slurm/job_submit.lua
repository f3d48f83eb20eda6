-- SPDX-License-Identifier: Apache-2.0
-- softmig job_submit plugin (slurm.conf: JobSubmitPlugins=lua; install next to slurm.conf as
-- job_submit.lua, on the slurmctld host). SLURM 22.05, Lua 5.1.
--
-- Users ask for a GPU slice with --gres=gpu:<type>.<N>:<count>, e.g. --gres=gpu:l40s.4:1 for a
-- quarter of an L40S. This script is the authority on what is allowed (cli_filter.lua is only a
-- client-side convenience users can bypass):
--   * a slice request becomes shards: <shards per GPU>/<N> x <count>, typed with the GPU type
--     (gres:shard:l40s:2), so SLURM packs slices onto one GPU and the prolog can find the size;
--   * rejected with a message the user sees: an unknown GPU type, N=1, an N the slice table
--     does not offer (including N above the shard count), more than one slice unless
--     allow_multiple_slices = yes, slices through --gpus/--gpus-per-task (use --gres), and raw
--     shard requests that match no slice;
--   * whole-GPU requests (--gres=gpu:l40s:1) and jobs without GPUs pass unchanged.
-- The slice table is the file the prolog reads (/etc/softmig/slices.conf, or
-- $SOFTMIG_SLICES_CONF in slurmctld's environment). It is read at every submission, so edits
-- need no reconfigure. If it cannot be read, slice requests are refused (never guessed).

local DEFAULT_TABLE = "/etc/softmig/slices.conf"

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

-- Returns table {types = {name = {shards = n, slices = {[N] = true}}}, allow_multiple = bool}
-- or nil, message.
local function load_table()
  local path = os.getenv("SOFTMIG_SLICES_CONF") or DEFAULT_TABLE
  local f, err = io.open(path, "r")
  if not f then return nil, "cannot read the slice table " .. path .. ": " .. tostring(err) end
  local t = { types = {}, allow_multiple = false }
  local section, current = nil, nil
  local n = 0
  for raw in f:lines() do
    n = n + 1
    local line = trim((raw:gsub("#.*$", "")))
    if line ~= "" then
      local head = line:match("^%[(.-)%]$")
      if head then
        head = trim(head)
        local name = head:match("^gpu%s+([%w_%-]+)$")
        if name then
          current = { shards = nil, slices = {} }
          t.types[name:lower()] = current
          section = "gpu"
        elseif head == "settings" then
          section, current = "settings", nil
        elseif head:match("^partition%s+[%w_%.%-]+$") then
          -- per-partition settings (sm_policy) are the prolog's business
          section, current = "partition", nil
        else
          f:close()
          return nil, path .. ":" .. n .. ": unknown section [" .. head .. "]"
        end
      else
        local key, value = line:match("^([%w_%.%-]+)%s*=%s*(.-)$")
        if not key then
          f:close()
          return nil, path .. ":" .. n .. ": expected key = value"
        end
        if section == "settings" and key == "allow_multiple_slices" then
          t.allow_multiple = (value:lower() == "yes" or value:lower() == "true" or value == "1")
        elseif section == "gpu" and key == "shards" then
          current.shards = tonumber(value)
        elseif section == "gpu" and key:match("^slice%.%d+$") then
          current.slices[tonumber(key:match("%d+$"))] = true
        end
      end
    end
  end
  f:close()
  for name, g in pairs(t.types) do
    if not g.shards or g.shards < 1 then
      return nil, path .. ": [gpu " .. name .. "] has no valid 'shards ='"
    end
  end
  return t
end

local function offered(g)
  local list = {}
  for d, _ in pairs(g.slices) do table.insert(list, d) end
  table.sort(list)
  return list
end

local function type_list(t)
  local names = {}
  for name, g in pairs(t.types) do
    local parts = {}
    for _, d in ipairs(offered(g)) do table.insert(parts, name .. "." .. d) end
    table.insert(names, table.concat(parts, ", "))
  end
  table.sort(names)
  return table.concat(names, "; ")
end

local function reject(msg)
  slurm.log_user("softmig: " .. msg)
  slurm.log_info("softmig: rejected a submission: %s", msg)
  return slurm.ERROR
end

-- Rewrites one tres_per_node value. Returns new value (or nil: unchanged), or false, message.
local function rewrite_spec(spec, t)
  local out, changed = {}, false
  for item in spec:gmatch("[^,]+") do
    local body = item:gsub("^gres[:/]", "")
    local name, typ, denom, count = body:match("^(gpu):([%w_%-]+)%.(%d+):?(%d*)$")
    if name then
      if not t then return false, "GPU slices are unavailable: the slice table cannot be read; please contact the administrators" end
      local g = t.types[typ:lower()]
      denom = tonumber(denom)
      count = tonumber(count) or 1
      if not g then
        return false, "unknown GPU type '" .. typ .. "' in '" .. body .. "'; slices offered: " .. type_list(t)
      end
      if denom == 1 then
        return false, "'" .. body .. "' is a whole GPU: ask for --gres=gpu:" .. typ .. ":1"
      end
      if not g.slices[denom] then
        local list = {}
        for _, d in ipairs(offered(g)) do table.insert(list, typ .. "." .. d) end
        return false, "'" .. typ .. "." .. denom .. "' is not a slice of " .. typ .. "; offered: " .. table.concat(list, ", ")
      end
      if count < 1 then return false, "'" .. body .. "' asks for no slice" end
      if count > 1 and not t.allow_multiple then
        return false, "one GPU slice per job: '" .. body .. "' asks for " .. count .. "; ask for a larger slice or a whole GPU"
      end
      local shards = math.floor(g.shards / denom) * count
      if shards > g.shards then
        return false, "'" .. body .. "' is more than one GPU; ask for whole GPUs (--gres=gpu:" .. typ .. ":N)"
      end
      table.insert(out, "gres:shard:" .. typ .. ":" .. shards)
      changed = true
    else
      -- Raw shard requests must be the size of a slice, so the prolog can always size them.
      local styp, scount = body:match("^shard:([%a_][%w_%-]*):(%d+)$")
      if not styp then scount = body:match("^shard:?(%d*)$") end
      if scount and t then
        scount = tonumber(scount) or 1
        local ok = false
        for name, g in pairs(t.types) do
          if (not styp or styp:lower() == name) and g.shards % scount == 0 and g.slices[g.shards / scount] then ok = true end
        end
        if not ok then
          return false, "'" .. body .. "' matches no GPU slice; ask for --gres=gpu:<type>.<N>:1 (offered: " .. type_list(t) .. ")"
        end
      elseif scount then
        return false, "GPU slices are unavailable: the slice table cannot be read; please contact the administrators"
      end
      table.insert(out, item)
    end
  end
  if changed then return table.concat(out, ",") end
  return nil
end

function slurm_job_submit(job_desc, part_list, submit_uid)
  local t, err = load_table()
  if not t then slurm.log_error("softmig: %s", err) end
  for _, field in ipairs({ "tres_per_job", "tres_per_task", "tres_per_socket" }) do
    local v = job_desc[field]
    if v and v:match("gpu:[%w_%-]+%.%d+") then
      return reject("GPU slices are requested with --gres=gpu:<type>.<N>:1 (e.g. --gres=gpu:l40s.4:1), not with --gpus or --gpus-per-task")
    end
  end
  local spec = job_desc.tres_per_node
  if spec and spec ~= "" then
    local new, msg = rewrite_spec(spec, t)
    if new == false then return reject(msg) end
    if new then
      job_desc.tres_per_node = new
      slurm.log_info("softmig: job of uid %u: %s -> %s", submit_uid, spec, new)
    end
  end
  return slurm.SUCCESS
end

function slurm_job_modify(job_desc, job_rec, part_list, modify_uid)
  local spec = job_desc.tres_per_node
  if spec and spec ~= "" then
    local t, err = load_table()
    if not t then slurm.log_error("softmig: %s", err) end
    local new, msg = rewrite_spec(spec, t)
    if new == false then return reject(msg) end
    if new then job_desc.tres_per_node = new end
  end
  return slurm.SUCCESS
end

slurm.log_info("softmig: job_submit.lua loaded")
return slurm.SUCCESS
