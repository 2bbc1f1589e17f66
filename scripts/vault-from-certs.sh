#!/usr/bin/env bash
# Print the plain-text vault YAML for one environment from scripts/generate-certs.sh output, for
# `ansible-vault encrypt` to read on stdin (nothing is written to disk):
#   scripts/vault-from-certs.sh prod certs-prod | .venv/bin/ansible-vault encrypt \
#     --vault-id prod@scripts/vault-pass-client --output inventory/prod/group_vars/prod/vault.yml
# Other secrets come from the environment when set: collect: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY;
# prod: POLY_PRIVATE_KEY, POLY_FUNDER, POLY_API_KEY, POLY_API_SECRET, POLY_API_PASSPHRASE.
# ca.key is not included: it stays offline, only needed to issue new certificates.
set -euo pipefail
if [[ $# -ne 2 || ! "$1" =~ ^(prod|collect)$ ]]; then
    echo "usage: $0 prod|collect <certs-dir>" >&2
    exit 64
fi
env="$1"
dir="$2"
for f in ca.crt server.crt server.key client.crt client.key; do
    if [[ ! -r "$dir/$f" ]]; then
        echo "error: $dir/$f not found (make it with scripts/generate-certs.sh)" >&2
        exit 1
    fi
done
block() {  # block <var> <file>: a YAML literal block scalar
    echo "$1: |"
    sed 's/^/  /' "$2"
}
quoted() {  # quoted <var> <ENV_NAME>: a JSON string is a valid YAML scalar, whatever it holds
    # The value goes through the environment, never a command line (ps would show it).
    printf '%s: %s\n' "$1" "$(python3 -c 'import json, os, sys; print(json.dumps(os.environ.get(sys.argv[1], "")))' "$2")"
}
echo "---"
block "vault_${env}_relay_ca_crt" "$dir/ca.crt"
for kind in server client; do
    block "vault_${env}_relay_${kind}_crt" "$dir/$kind.crt"
    block "vault_${env}_relay_${kind}_key" "$dir/$kind.key"
done
if [[ "$env" == collect ]]; then
    quoted vault_collect_aws_access_key_id AWS_ACCESS_KEY_ID
    quoted vault_collect_aws_secret_access_key AWS_SECRET_ACCESS_KEY
else
    quoted vault_prod_poly_private_key POLY_PRIVATE_KEY
    quoted vault_prod_poly_funder POLY_FUNDER
    quoted vault_prod_poly_api_key POLY_API_KEY
    quoted vault_prod_poly_api_secret POLY_API_SECRET
    quoted vault_prod_poly_api_passphrase POLY_API_PASSPHRASE
fi
