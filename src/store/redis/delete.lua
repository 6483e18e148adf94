-- ARGV: base, hex. 1 removed; 0 it was not there.
if remove(ARGV[2]) then
  return 1
end
return 0
