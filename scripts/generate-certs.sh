#!/usr/bin/env bash
# Make the mutual-TLS material for one relay link (Frankfurt sender -> Amsterdam receiver):
#   ca.crt/ca.key          private CA that signs both ends (keep ca.key offline / in Vault)
#   server.crt/server.key  for the receiver, with the Amsterdam IP or hostname as subjectAltName
#   client.crt/client.key  for the sender
# Keys are ECDSA P-256; leaf certs carry the matching extendedKeyUsage so neither can pose as the other.
#
# usage: generate-certs.sh <server-ip-or-hostname>[,<more names>...] [out-dir]   (out-dir default ./certs)
set -euo pipefail

if [[ $# -lt 1 || "$1" == -h || "$1" == --help ]]; then
    echo "usage: $0 <server-ip-or-hostname>[,<more>...] [out-dir]" >&2
    exit 64
fi
names="$1"
out="${2:-certs}"
days_ca="${CA_DAYS:-3650}"
days_leaf="${LEAF_DAYS:-825}"

if [[ -e "$out/ca.crt" ]]; then
    echo "error: $out/ca.crt exists; refusing to overwrite a CA (use a new out-dir)" >&2
    exit 1
fi
mkdir -p "$out"
umask 077

san=""
IFS=',' read -ra parts <<< "$names"
for name in "${parts[@]}"; do
    if [[ "$name" =~ ^[0-9]+(\.[0-9]+){3}$ || "$name" == *:* ]]; then
        san+="IP:${name},"
    else
        san+="DNS:${name},"
    fi
done
san="${san%,}"

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

newkey "$out/ca.key"
openssl req -x509 -new -key "$out/ca.key" -sha256 -days "$days_ca" -subj "/CN=polymm relay CA" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$out/ca.crt"

issue() {  # issue <name> <cn> <extendedKeyUsage> [subjectAltName]
    local name="$1" cn="$2" eku="$3" alt="${4:-}"
    local ext
    ext="$(mktemp)"
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature"
        echo "extendedKeyUsage=${eku}"
        if [[ -n "$alt" ]]; then echo "subjectAltName=${alt}"; fi
    } > "$ext"
    newkey "$out/$name.key"
    openssl req -new -key "$out/$name.key" -subj "/CN=${cn}" -out "$out/$name.csr"
    openssl x509 -req -in "$out/$name.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
        -days "$days_leaf" -sha256 -extfile "$ext" -out "$out/$name.crt" 2>/dev/null
    rm -f "$out/$name.csr" "$ext"
}

issue server "${parts[0]}" serverAuth "$san"
issue client "binance-sender" clientAuth
rm -f "$out/ca.srl"
chmod 600 "$out"/*.key
chmod 644 "$out"/*.crt
echo "wrote $out/{ca,server,client}.{crt,key} (server names: $san)"
