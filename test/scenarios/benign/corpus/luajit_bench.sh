#!/bin/bash
# luajit-bench: a LuaJIT script: 6 s of a traced numeric loop, then
# string and table work (a game server's or a proxy's scripting).
set -euo pipefail
luajit - <<'L'
local t, s = os.clock(), 0
local function lcg(x) return (x * 1103515245 + 12345) % 2147483648 end
while os.clock() - t < 6 do for i = 1, 1000000 do s = lcg(s + i) end end
local words = {}
for i = 1, 200000 do words[#words + 1] = string.format("k%05d", i % 50000) end
local count = {}
for _, w in ipairs(words) do count[w] = (count[w] or 0) + 1 end
local n = 0
for _ in pairs(count) do n = n + 1 end
print(s, n)
L
