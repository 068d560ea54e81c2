# every staging call: keep whatever parts arrived (they also stay in the tree while the machine is warm)
mkdir -p /tmp/parts; cp -n .device/p1/* .device/p2/* .device/g[0-9]/* /tmp/parts/ 2>/dev/null; cp -rn .device/gemma-tok /tmp/parts/ 2>/dev/null; ls -la /tmp/parts; true
