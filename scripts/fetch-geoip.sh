#!/usr/bin/env bash
# Fetches the CC0 geo-whois-asn-country database (npm package
# @ip-location-db/geo-whois-asn-country-mmdb, pinned) into .cache/geoip/, where `router serve`
# looks by default. Idempotent: does nothing when that version is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
version="${GEOIP_VERSION:-2.3.2026061719}"
dest=.cache/geoip
if [ -f "$dest/geo-whois-asn-country.mmdb" ] && [ "$(cat "$dest/VERSION" 2>/dev/null)" = "$version" ]; then
  exit 0
fi
command -v npm >/dev/null || { echo "fetch-geoip: npm is needed (apt-get install npm)" >&2; exit 1; }
mkdir -p "$dest"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "@ip-location-db/geo-whois-asn-country-mmdb@$version" >/dev/null)
tar -xzf "$tmp"/*.tgz -C "$tmp"
cp "$tmp/package/geo-whois-asn-country.mmdb" "$dest/"
cp "$tmp/package/NRO_LICENSE" "$dest/" 2>/dev/null || true
echo "$version" > "$dest/VERSION"
echo "fetch-geoip: $dest/geo-whois-asn-country.mmdb ($version)"
