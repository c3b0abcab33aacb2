-- Lua tables and strings: records keyed by generated strings, growing
-- arrays, sorting and concatenation. pairs() order is not fixed between
-- runs, so only sorted or order-free results are printed.
local rounds = tonumber(arg[1]) or 4
local items = tonumber(arg[2]) or 50000
local total = 0
for round = 1, rounds do
  local t = {}
  for i = 1, items do
    local key = "k" .. ((i * 7919 + round) % (items * 4 // 5))
    local rec = t[key]
    if not rec then
      rec = { name = key, items = {} }
      t[key] = rec
    end
    rec.items[#rec.items + 1] = string.rep("x", i % 13) .. i
  end
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for i = 1, #keys, 97 do parts[#parts + 1] = keys[i] .. ":" .. #t[keys[i]].items end
  total = (total + #table.concat(parts, ",") + #keys) % 1000000007
end
print(total)
