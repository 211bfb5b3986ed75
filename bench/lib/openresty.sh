# shellcheck shell=bash
# bench/lib/openresty.sh: sourced by the bench scripts: Debian's nginx running OpenResty's http
# Lua module, the peer of a netproxy Lua service.
#
# The module is Debian's libnginx-mod-http-lua (with -ndk, libluajit2-5.1-2, lua-resty-core,
# lua-resty-lrucache) unpacked into /opt/np-openresty by scripts/install-deps, never installed:
# its libluajit2 would replace Debian's LuaJIT, which netproxy builds against. nginx loads the
# two modules (load_module, NDK first) and runs with LD_LIBRARY_PATH on the unpacked libluajit2
# (same soname), lua_package_path on the unpacked resty.core.
#   openresty_check: dies unless nginx and the module are there and the module resolves
#     libluajit from the unpacked tree (never Debian's, which it was not built for).
#   nginx_frame DIR PORT LOAD HTTP SERVER: the config of one nginx worker process (daemon off,
#     no access log, every file it writes under DIR): LOAD at the top (load_module lines), HTTP
#     in http{}, SERVER in the server{} listening on 127.0.0.1:PORT. nginx's C floor uses it too.
#   openresty_conf DIR PORT LUA_PATH HTTP SERVER: the config of one nginx worker process
#     (daemon off, no access log, every file it writes under DIR) with the module loaded;
#     lua_package_path is LUA_PATH (entries ending in ';', may be empty), then the unpacked
#     resty.core, then LuaJIT's default; HTTP goes into http{}, SERVER into the server{}
#     listening on 127.0.0.1:PORT.
#   openresty_start DIR CONF PORT: runs it with PIN_SERVER in front, waits until PORT listens
#     (dies with its log otherwise); sets OPENRESTY_PID, also added to PIDS.
# Needs NGINX and OPENRESTY (defaults: nginx on PATH, /opt/np-openresty), PIDS and PIN_SERVER
# (arrays), and proc.sh (die, wait_listen).

NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
OPENRESTY=${OPENRESTY:-/opt/np-openresty}
OR_MODULES=$OPENRESTY/usr/lib/nginx/modules
OR_LIBS=$OPENRESTY/usr/lib/x86_64-linux-gnu

openresty_check() {
  [[ -x $NGINX ]] || die "nginx not found (apt-get install -y nginx)"
  [[ -f $OR_MODULES/ngx_http_lua_module.so && -f $OPENRESTY/usr/share/lua/5.1/resty/core.lua ]] ||
    die "no OpenResty module in $OPENRESTY: run scripts/install-deps"
  LD_LIBRARY_PATH=$OR_LIBS ldd "$OR_MODULES/ngx_http_lua_module.so" | grep -q "libluajit-5.1.so.2 => $OR_LIBS/" ||
    die "ngx_http_lua_module.so does not resolve libluajit from $OR_LIBS"
}

nginx_frame() {
  local dir=$1 port=$2 load=$3 http=$4 server=$5
  mkdir -p "$dir"
  cat <<CONF
$load
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  keepalive_requests 1000000;
  $http
  server {
    listen 127.0.0.1:$port;
    default_type text/plain;
    $server
  }
}
CONF
}

openresty_conf() {
  local dir=$1 port=$2 lua_path=$3 http=$4 server=$5
  nginx_frame "$dir" "$port" "load_module $OR_MODULES/ndk_http_module.so;
load_module $OR_MODULES/ngx_http_lua_module.so;" "lua_package_path \"$lua_path$OPENRESTY/usr/share/lua/5.1/?.lua;;\";
  $http" "$server"
}

openresty_start() {
  local dir=$1 conf=$2 port=$3
  LD_LIBRARY_PATH=$OR_LIBS "${PIN_SERVER[@]}" "$NGINX" -p "$dir" -c "$conf" >"$dir/stdout.log" 2>&1 &
  OPENRESTY_PID=$!
  PIDS+=("$OPENRESTY_PID")
  wait_listen "$port" "$OPENRESTY_PID" ||
    die "OpenResty's nginx did not start: $(tail -5 "$dir/stdout.log" "$dir/error.log" 2>/dev/null)"
}
