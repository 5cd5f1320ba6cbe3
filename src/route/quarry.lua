-- Quarry's dynamic route table, run by nginx's lua module (src/route/dynamic.rs
-- writes this file to <data>/nginx/lua/quarry.lua at every start).
--
-- The table lives in the shared dict `quarry_routes`, one memory for every
-- worker, so a write is seen by all of them at once:
--   h:<host>        -> "<app>.<node>"        which node answers a host
--   u:<app>.<node>  -> "addr:port addr:port" the node's containers
--   a:<app>         -> the app's block as last written (read back by the daemon)
--   d:<addr:port>   -> true for 2 s after a connect failure (passive health)
--   version         -> bumped by every accepted write
-- The daemon writes it over a unix socket only root can reach (`control`).
local balancer = require "ngx.balancer"

local routes = ngx.shared.quarry_routes
local M = {}
-- Round-robin position per node, per worker.
local rr = {}

local function words(s)
    local t = {}
    for w in s:gmatch("%S+") do
        t[#t + 1] = w
    end
    return t
end

local function text(status, body)
    ngx.status = status
    ngx.header["Content-Type"] = "text/plain"
    ngx.print(body)
    return ngx.exit(ngx.HTTP_OK)
end

-- access phase: find the node of this host, or answer for it.
function M.access()
    local key = routes:get("h:" .. ngx.var.host)
    if not key then
        return text(404, "quarry: no app is routed at this host\n")
    end
    local ups = routes:get("u:" .. key)
    if not ups or ups == "" then
        local app, node = key:match("^([^.]+)%.(.+)$")
        return text(503, "quarry: " .. (app or "?") .. " has no running " .. (node or "?") .. " containers\n")
    end
    ngx.ctx.quarry_key = key
    ngx.ctx.quarry_peers = words(ups)
end

-- balancer phase: round robin over the node's containers, skipping those that
-- refused a connection in the last 2 s and those this request already tried.
function M.balance()
    local ctx = ngx.ctx
    local peers = ctx.quarry_peers
    if not peers then
        return ngx.exit(500)
    end
    local n = #peers
    local tried = ctx.quarry_tried
    if not tried then
        tried = {}
        ctx.quarry_tried = tried
        if n > 1 then
            balancer.set_more_tries(n - 1)
        end
        local i = (rr[ctx.quarry_key] or 0) % n + 1
        rr[ctx.quarry_key] = i
        ctx.quarry_start = i
    else
        local state = balancer.get_last_failure()
        if state == "failed" and ctx.quarry_cur then
            routes:set("d:" .. ctx.quarry_cur, true, 2)
        end
    end
    local start = ctx.quarry_start
    local pick
    for pass = 1, 2 do
        for j = 0, n - 1 do
            local a = peers[(start + j - 1) % n + 1]
            if not tried[a] and (pass == 2 or not routes:get("d:" .. a)) then
                pick = a
                break
            end
        end
        if pick then
            break
        end
    end
    pick = pick or peers[start]
    tried[pick] = true
    ctx.quarry_cur = pick
    local host, port = pick:match("^%[?([^%]]+)%]?:(%d+)$")
    local ok, err = balancer.set_current_peer(host, tonumber(port))
    if not ok then
        ngx.log(ngx.ERR, "quarry: cannot use peer ", pick, ": ", err)
        return ngx.exit(502)
    end
end

local function valid_addr(a)
    return a:match("^%d+%.%d+%.%d+%.%d+:%d+$") or a:match("^%[[%x:.]+%]:%d+$")
end

-- One app block: "app NAME", then "route APP.NODE ADDR…" and "host NAME APP.NODE"
-- lines. Returns the parsed block or nil and why.
local function parse(app, lines)
    if not app:match("^[a-z0-9][a-z0-9-]*$") then
        return nil, "bad app name " .. app
    end
    local b = { app = app, routes = {}, hosts = {} }
    for _, line in ipairs(lines) do
        local w = words(line)
        if w[1] == "route" and w[2] then
            if w[2]:sub(1, #app + 1) ~= app .. "." or w[2]:find("[^a-z0-9.-]") then
                return nil, "app " .. app .. ": bad route " .. w[2]
            end
            for k = 3, #w do
                if not valid_addr(w[k]) then
                    return nil, "app " .. app .. ": bad address " .. w[k]
                end
            end
            b.routes[w[2]] = table.concat(w, " ", 3)
        elseif w[1] == "host" and w[2] and w[3] and not w[4] then
            if w[2]:find("[^a-z0-9.-]") or w[3]:sub(1, #app + 1) ~= app .. "." then
                return nil, "app " .. app .. ": bad host line " .. line
            end
            b.hosts[w[2]] = w[3]
        else
            return nil, "app " .. app .. ": bad line " .. line
        end
    end
    for h, key in pairs(b.hosts) do
        if not b.routes[key] then
            return nil, "app " .. app .. ": host " .. h .. " names no route"
        end
    end
    return b
end

-- Write one block; on any failure every key is put back as it was.
local function apply(b, raw)
    local old = routes:get("a:" .. b.app)
    local prev = { routes = {}, hosts = {} }
    if old then
        local lines = {}
        for l in old:gmatch("[^\n]+") do
            lines[#lines + 1] = l
        end
        table.remove(lines, 1)
        prev = parse(b.app, lines) or prev
    end
    local saved = {}
    local function put(k, v)
        if saved[k] == nil then
            saved[k] = { routes:get(k) }
        end
        if v == nil then
            routes:delete(k)
            return true
        end
        local ok, err = routes:safe_set(k, v)
        return ok, err
    end
    local function undo(err)
        for k, v in pairs(saved) do
            if v[1] == nil then
                routes:delete(k)
            else
                routes:set(k, v[1])
            end
        end
        return nil, err
    end
    -- Containers first, then the hosts that lead to them, then what went away.
    for key, ups in pairs(b.routes) do
        local ok, err = put("u:" .. key, ups)
        if not ok then return undo(err) end
    end
    for h, key in pairs(b.hosts) do
        local ok, err = put("h:" .. h, key)
        if not ok then return undo(err) end
    end
    for h in pairs(prev.hosts) do
        -- A host another app took over since is no longer ours to drop.
        local cur = routes:get("h:" .. h)
        if not b.hosts[h] and cur and cur:sub(1, #b.app + 1) == b.app .. "." then
            put("h:" .. h, nil)
        end
    end
    for key in pairs(prev.routes) do
        if not b.routes[key] then
            put("u:" .. key, nil)
        end
    end
    local ok, err
    if next(b.routes) == nil and next(b.hosts) == nil then
        ok, err = put("a:" .. b.app, nil)
    else
        ok, err = put("a:" .. b.app, raw)
    end
    if not ok then return undo(err) end
    return routes:incr("version", 1, 0)
end

-- The control server (unix socket): GET /version, GET /apps/NAME, PUT /apps.
function M.control()
    local method, uri = ngx.req.get_method(), ngx.var.uri
    if method == "GET" and uri == "/version" then
        return text(200, tostring(routes:get("version") or 0) .. "\n")
    end
    if method == "GET" and uri:sub(1, 6) == "/apps/" then
        local got = routes:get("a:" .. uri:sub(7))
        if not got then
            return text(404, "")
        end
        return text(200, got)
    end
    if method ~= "PUT" or uri ~= "/apps" then
        return text(405, "quarry: unknown control request\n")
    end
    ngx.req.read_body()
    local body = ngx.req.get_body_data()
    if not body then
        local file = ngx.req.get_body_file()
        if file then
            local f = io.open(file, "rb")
            if f then
                body = f:read("*a")
                f:close()
            end
        end
    end
    body = body or ""
    -- Parse every block before writing any.
    local blocks, cur = {}, nil
    for line in body:gmatch("[^\n]+") do
        local name = line:match("^app (%S+)$")
        if name then
            cur = { name = name, lines = {}, raw = line .. "\n" }
            blocks[#blocks + 1] = cur
        elseif cur then
            cur.lines[#cur.lines + 1] = line
            cur.raw = cur.raw .. line .. "\n"
        else
            return text(400, "quarry: a block must start with an app line\n")
        end
    end
    local parsed = {}
    for i, blk in ipairs(blocks) do
        local b, err = parse(blk.name, blk.lines)
        if not b then
            return text(400, "quarry: " .. err .. "\n")
        end
        parsed[i] = b
    end
    local version = routes:get("version") or 0
    for i, b in ipairs(parsed) do
        local v, err = apply(b, blocks[i].raw)
        if not v then
            return text(507, "quarry: cannot store the routes of " .. b.app .. ": " .. tostring(err) .. "\n")
        end
        version = v
    end
    return text(200, tostring(version) .. "\n")
end

return M
