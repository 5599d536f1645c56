--[[ gpusched for Slurm's job_submit/lua plugin (Slurm 22.05 and later, Lua 5.1).

At submit, ask the running gpusched service (POST /v1/place) for the job's nodes and
GPU power cap, then
  * set the job's node list (job_desc.req_nodes) to exactly those nodes, and
  * record "gpusched:job=<id>,cap_w=<W>" in the job's admin_comment (users cannot edit
    it) and at the front of its comment (which the prolog and epilog read from
    SLURM_JOB_COMMENT; slurm_job_modify below refuses a user's edit of it).
prolog.sh applies the cap on the job's nodes, epilog.sh releases the job in gpusched.

Why the service and not `python -m gpusched place`: a placement is only worth
something while someone remembers it until the job ends.  The service holds the
site's live state in memory, journals every reply to disk before answering, and
serialises concurrent submits; the CLI would load and rewrite a whole state file per
job, race with itself, and start a Python interpreter inside slurmctld's submit path.

A job asks for whole nodes (`sbatch -N <n> --exclusive ...`): gpusched is asked for
n * GPUS_PER_NODE GPUs.  A lowest acceptable cap may be given in the comment:
`--comment=gpusched:min_cap_w=400`.  A job that names its own nodes (--nodelist) is
left to Slurm.

Settings come from gpusched-slurm.conf beside this script (KEY=value lines, the same
file prolog.sh and epilog.sh source); see docs/slurm.md.
--]]

local SELF_DIR = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./")
local NO_VAL = 4294967294
local TAG = "gpusched:"
local submitted = 0

local function read_conf()
    local conf = {
        GPUSCHED_URL = "http://127.0.0.1:8787",
        GPUSCHED_GPUS_PER_NODE = "8",
        GPUSCHED_TIMEOUT_S = "5",
        GPUSCHED_CURL = "/usr/bin/curl",
        GPUSCHED_HEADER_FILE = "",      -- a file with "Authorization: Bearer <token>"
        GPUSCHED_ON_UNPLACED = "reject", -- or "pass": Slurm places it, uncapped
        GPUSCHED_ON_ERROR = "reject",    -- service down or a bad reply; or "pass"
    }
    local file = io.open(SELF_DIR .. "gpusched-slurm.conf", "r")
    if file then
        for line in file:lines() do
            local key, value = line:match("^%s*([A-Z_]+)%s*=%s*(.-)%s*$")
            if key then
                conf[key] = value:gsub('^"(.*)"$', "%1"):gsub("^'(.*)'$", "%1")
            end
        end
        file:close()
    end
    return conf
end

-- Only these characters reach the shell: a job id we make, digits, a URL from the conf.
local function shell_quote(text)
    return "'" .. tostring(text):gsub("'", "'\\''") .. "'"
end

local function post(conf, path, body)
    local cmd = conf.GPUSCHED_CURL .. " -sS --max-time " .. shell_quote(conf.GPUSCHED_TIMEOUT_S)
        .. " -X POST -H 'Content-Type: application/json'"
    if conf.GPUSCHED_HEADER_FILE ~= "" then
        cmd = cmd .. " -H @" .. shell_quote(conf.GPUSCHED_HEADER_FILE)
    end
    cmd = cmd .. " -w '\\nHTTP %{http_code}' -d " .. shell_quote(body) .. " "
        .. shell_quote(conf.GPUSCHED_URL .. path) .. " 2>&1"
    local pipe = io.popen(cmd, "r")
    if not pipe then
        return nil, "cannot run " .. conf.GPUSCHED_CURL
    end
    local out = pipe:read("*a")
    pipe:close()
    local reply, status = out:match("^(.*)\nHTTP (%d+)$")
    if not status or status == "000" then
        return nil, "no reply from " .. conf.GPUSCHED_URL .. ": " .. out
    end
    return reply, tonumber(status)
end

local function refuse_or_pass(conf, setting, message)
    slurm.log_info("gpusched: %s", message)
    if conf[setting] == "pass" then
        return slurm.SUCCESS
    end
    slurm.log_user("gpusched: %s", message)
    return slurm.ERROR
end

function slurm_job_submit(job_desc, part_list, submit_uid)
    if job_desc.req_nodes ~= nil and job_desc.req_nodes ~= "" then
        slurm.log_info("gpusched: job %s names its nodes (%s); left to Slurm",
                       tostring(job_desc.name), job_desc.req_nodes)
        return slurm.SUCCESS
    end
    local conf = read_conf()
    local nodes = job_desc.min_nodes
    if nodes == nil or nodes == NO_VAL or nodes < 1 then
        nodes = 1
    end
    local gpus = nodes * tonumber(conf.GPUSCHED_GPUS_PER_NODE)
    local user_comment = job_desc.comment or ""
    local min_cap = user_comment:match("gpusched:min_cap_w=(%d+)")
    submitted = submitted + 1
    local job_id = string.format("slurm:%d:%d:%d:%d", submit_uid, os.time(), submitted,
                                 math.random(0, 999999))
    local job = string.format('{"id": "%s", "gpus": %d', job_id, gpus)
    if min_cap then
        job = job .. string.format(', "min_cap_w": %d', tonumber(min_cap))
    end
    local reply, status = post(conf, "/v1/place", '{"job": ' .. job .. '}}')
    if reply == nil then
        return refuse_or_pass(conf, "GPUSCHED_ON_ERROR", status)
    end
    if status ~= 200 then
        return refuse_or_pass(conf, "GPUSCHED_ON_ERROR",
                              string.format("service answered %d: %s", status, reply))
    end
    if not reply:match('"placed"%s*:%s*true') then
        local why = reply:match('"message"%s*:%s*"(.-)"') or reply
        return refuse_or_pass(conf, "GPUSCHED_ON_UNPLACED",
                              string.format("no room for %d GPUs now: %s", gpus, why))
    end
    local cap_w = reply:match('"cap_w"%s*:%s*(%d+)')
    local listed = reply:match('"node_names"%s*:%s*%[(.-)%]')
    local names = {}
    for name in (listed or ""):gmatch('"([^"]+)"') do
        names[#names + 1] = name
    end
    if cap_w == nil or #names ~= nodes then
        return refuse_or_pass(conf, "GPUSCHED_ON_ERROR", "reply without nodes or cap: " .. reply)
    end
    local tag = string.format("%sjob=%s,cap_w=%s", TAG, job_id, cap_w)
    job_desc.req_nodes = table.concat(names, ",")
    job_desc.admin_comment = tag
    if user_comment ~= "" then
        job_desc.comment = tag .. " " .. user_comment
    else
        job_desc.comment = tag
    end
    slurm.log_info("gpusched: %s gets %d nodes at %s W: %s", job_id, nodes, cap_w,
                   job_desc.req_nodes)
    return slurm.SUCCESS
end

function slurm_job_modify(job_desc, job_rec, part_list, modify_uid)
    -- The prolog reads the cap from the comment; only root (or SlurmUser) may change it.
    if modify_uid ~= 0 and job_desc.comment ~= nil and job_rec.comment ~= nil
            and job_rec.comment:find(TAG .. "job=", 1, true) then
        slurm.log_user("gpusched: the comment of a job gpusched placed holds its cap; "
                       .. "it cannot be changed")
        return slurm.ERROR
    end
    return slurm.SUCCESS
end

math.randomseed(os.time())
slurm.log_info("gpusched: job_submit.lua loaded from %s", SELF_DIR)
return slurm.SUCCESS
