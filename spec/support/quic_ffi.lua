-- spec/support/quic_ffi.lua: the QUIC Initial reader (src/quic.c, built alone as
-- build/libnpquic.so) through LuaJIT's FFI, for the unit spec and the fuzzer; and seal(), which
-- protects a client Initial with libcrypto directly (AES-128-GCM, AES-128-ECB for the header),
-- so that mutated frames can be fed to the reader as packets that decrypt.
local ffi = require "ffi"

for _, decl in ipairs({
  "struct np_quic_keys { uint8_t key[16], iv[12], hp[16]; };",
  "int np_quic_initial_keys(uint32_t version, const uint8_t *dcid, size_t dcidlen, struct np_quic_keys *k);",
  "struct np_quic_hello;",
  "struct np_quic_hello *np_quic_hello_new(void);",
  "void np_quic_hello_free(struct np_quic_hello *h);",
  "int np_quic_hello_feed(struct np_quic_hello *h, const uint8_t *d, size_t len, const char **why);",
  "const uint8_t *np_quic_hello_bytes(const struct np_quic_hello *h, size_t *len);",
  "uint32_t np_quic_hello_version(const struct np_quic_hello *h);",
  "typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX; typedef struct evp_cipher_st EVP_CIPHER;",
  "EVP_CIPHER_CTX *EVP_CIPHER_CTX_new(void);",
  "const EVP_CIPHER *EVP_aes_128_gcm(void);",
  "const EVP_CIPHER *EVP_aes_128_ecb(void);",
  "int EVP_EncryptInit_ex(EVP_CIPHER_CTX *c, const EVP_CIPHER *t, void *e, const uint8_t *key, const uint8_t *iv);",
  "int EVP_EncryptUpdate(EVP_CIPHER_CTX *c, uint8_t *out, int *outl, const uint8_t *in, int inl);",
  "int EVP_EncryptFinal_ex(EVP_CIPHER_CTX *c, uint8_t *out, int *outl);",
  "int EVP_CIPHER_CTX_ctrl(EVP_CIPHER_CTX *c, int type, int arg, void *ptr);",
  "int EVP_CIPHER_CTX_set_padding(EVP_CIPHER_CTX *c, int pad);",
}) do pcall(ffi.cdef, decl) end

local build = os.getenv("NETPROXY_BUILD") or (require("spec.helpers").build)
-- (built without sanitizers in either build: busted's luajit has no ASan runtime)
local lib = ffi.load(build .. "/libnpquic.so")
local crypto = ffi.load("crypto")
local byte, char, sub = string.byte, string.char, string.sub

local _M = { lib = lib, V1 = 1, V2 = 0x6b3343cf }

-- The client Initial keys of version for dcid: key, iv, hp (raw strings).
function _M.keys(version, dcid)
  local k = ffi.new("struct np_quic_keys")
  assert(lib.np_quic_initial_keys(version, dcid, #dcid, k) == 0, "no keys for that version")
  return ffi.string(k.key, 16), ffi.string(k.iv, 12), ffi.string(k.hp, 16)
end

-- Feeds the datagrams in turn to one reader: the answer to each, then the ClientHello (or
-- nil), the last reason given, and the version read.
function _M.feed(list)
  local st = ffi.gc(lib.np_quic_hello_new(), lib.np_quic_hello_free)
  local why, answers = ffi.new("const char *[1]"), {}
  for i, d in ipairs(list) do answers[i] = lib.np_quic_hello_feed(st, d, #d, why) end
  local len = ffi.new("size_t[1]")
  local p = lib.np_quic_hello_bytes(st, len)
  return answers, p ~= nil and ffi.string(p, len[0]) or nil, why[0] ~= nil and ffi.string(why[0]) or nil,
         lib.np_quic_hello_version(st)
end

local function varint(v)
  if v < 64 then return char(v) end
  if v < 16384 then return char(0x40 + math.floor(v / 256), v % 256) end
  return char(0x80, math.floor(v / 65536) % 256, math.floor(v / 256) % 256, v % 256)
end
_M.varint = varint

local ctx = ffi.gc(crypto.EVP_CIPHER_CTX_new(), nil)
local outl = ffi.new("int[1]")

local function gcm_seal(key, nonce, aad, plain)
  local out, tag = ffi.new("uint8_t[?]", #plain + 16), ffi.new("uint8_t[16]")
  assert(crypto.EVP_EncryptInit_ex(ctx, crypto.EVP_aes_128_gcm(), nil, key, nonce) == 1)
  assert(crypto.EVP_EncryptUpdate(ctx, nil, outl, aad, #aad) == 1)
  assert(crypto.EVP_EncryptUpdate(ctx, out, outl, plain, #plain) == 1)
  local n = outl[0]
  assert(crypto.EVP_EncryptFinal_ex(ctx, out + n, outl) == 1)
  assert(crypto.EVP_CIPHER_CTX_ctrl(ctx, 0x10, 16, tag) == 1)        -- EVP_CTRL_GCM_GET_TAG
  return ffi.string(out, n + outl[0]) .. ffi.string(tag, 16)
end

local function ecb(key, block)
  local out = ffi.new("uint8_t[32]")
  assert(crypto.EVP_EncryptInit_ex(ctx, crypto.EVP_aes_128_ecb(), nil, key, nil) == 1)
  crypto.EVP_CIPHER_CTX_set_padding(ctx, 0)
  assert(crypto.EVP_EncryptUpdate(ctx, out, outl, block, 16) == 1)
  return ffi.string(out, 16)
end

-- A client Initial of version carrying payload (frames), packet number pn on 2 bytes.
function _M.seal(version, dcid, scid, pn, payload)
  if #payload < 2 then payload = payload .. ("\0"):rep(2 - #payload) end   -- room for the sample
  local key, iv, hp = _M.keys(version, dcid)
  local first = 0xc0 + (version == _M.V2 and 0x10 or 0) + 1
  local header = char(first) .. char(math.floor(version / 16777216) % 256, math.floor(version / 65536) % 256,
                                     math.floor(version / 256) % 256, version % 256) ..
                 char(#dcid) .. dcid .. char(#scid) .. scid .. "\0" .. varint(2 + #payload + 16) ..
                 char(math.floor(pn / 256) % 256, pn % 256)
  local nonce = sub(iv, 1, 10) .. char(bit.bxor(byte(iv, 11), math.floor(pn / 256) % 256), bit.bxor(byte(iv, 12), pn % 256))
  local ct = gcm_seal(key, nonce, header, payload)
  local mask = ecb(hp, sub(ct, 3, 18))          -- the sample: 4 bytes past the packet number's start
  local pn_off = #header - 2
  local h = { byte(header, 1, -1) }
  h[1] = bit.bxor(h[1], bit.band(byte(mask, 1), 0x0f))
  for i = 1, 2 do h[pn_off + i] = bit.bxor(h[pn_off + i], byte(mask, 1 + i)) end
  return char(unpack(h)) .. ct
end

return _M
