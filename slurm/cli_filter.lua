-- SPDX-License-Identifier: Apache-2.0
-- softmig cli_filter plugin (slurm.conf: CliFilterPlugins=lua; install next to slurm.conf as
-- cli_filter.lua on login and compute nodes). SLURM 22.05, Lua 5.1.
--
-- Why: job_submit.lua rewrites a job's --gres=gpu:l40s.4:1 into shards, but a direct
-- `srun --gres=gpu:l40s.4:1 cmd` also creates a step that keeps the original request and fails
-- ("Step requested GRES (gpu:l40s.4) not found in the job"). This filter makes the same rewrite
-- in srun/sbatch/salloc before anything is sent, so job and step agree.
-- It only rewrites requests it fully understands and leaves everything else to job_submit.lua,
-- which validates and explains (this filter can be bypassed by users, so it enforces nothing).
-- Table: /etc/softmig/slices.conf or $SOFTMIG_SLICES_CONF (same file as the prolog's).

local DEFAULT_TABLE = "/etc/softmig/slices.conf"

-- Returns the shards per GPU of `typ` if slice.<denom> is offered and `count` slices are
-- allowed, else nil (the request is then left for job_submit.lua to explain).
local function shards_per_gpu(typ, denom, count)
  local f = io.open(os.getenv("SOFTMIG_SLICES_CONF") or DEFAULT_TABLE, "r")
  if not f then return nil end
  local section, shards, offered, multiple = nil, nil, false, false
  for raw in f:lines() do
    local line = (raw:gsub("#.*$", "")):gsub("^%s+", ""):gsub("%s+$", "")
    local head = line:match("^%[(.-)%]$")
    if head then
      head = head:gsub("^%s+", ""):gsub("%s+$", "")
      if head == "settings" then
        section = "settings"
      elseif (head:match("^gpu%s+([%w_%-]+)$") or ""):lower() == typ:lower() then
        section = "type"
      else
        section = nil
      end
    else
      local key, value = line:match("^([%w_%.%-]+)%s*=%s*(.-)$")
      if section == "type" and key == "shards" then shards = tonumber(value) end
      if section == "type" and key == "slice." .. denom then offered = true end
      if section == "settings" and key == "allow_multiple_slices" then
        value = value:lower()
        multiple = (value == "yes" or value == "true" or value == "1")
      end
    end
  end
  f:close()
  if not offered or not shards or (count > 1 and not multiple) then return nil end
  if math.floor(shards / denom) * count > shards then return nil end
  return shards
end

local function rewrite(spec)
  local out, changed = {}, false
  for item in spec:gmatch("[^,]+") do
    local body = item:gsub("^gres[:/]", "")
    local typ, denom, count = body:match("^gpu:([%w_%-]+)%.(%d+):?(%d*)$")
    count = tonumber(count) or 1
    local shards = typ and tonumber(denom) > 1 and shards_per_gpu(typ, tonumber(denom), count)
    if shards then
      table.insert(out, "shard:" .. typ .. ":" .. math.floor(shards / tonumber(denom)) * count)
      changed = true
    else
      table.insert(out, item)
    end
  end
  if changed then return table.concat(out, ",") end
  return nil
end

function slurm_cli_setup_defaults(options, early_pass)
  return slurm.SUCCESS
end

function slurm_cli_pre_submit(options, pack_offset)
  local spec = options["gres"]
  if spec and spec ~= "" then
    local new = rewrite(spec)
    if new then options["gres"] = new end
  end
  return slurm.SUCCESS
end

function slurm_cli_post_submit(offset, job_id, step_id)
  return slurm.SUCCESS
end
