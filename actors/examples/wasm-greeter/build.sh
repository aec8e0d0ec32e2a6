#!/bin/sh
# Rebuild greeter.wasm from greeter_app.py with componentize-py (PyPI:
# pip install componentize-py==0.25.1).  --stub-wasi replaces every WASI
# import with a trapping stub, so the component imports only the message
# server and needs no WASI grant (Python's `random` then has a seed fixed at
# build time).  componentize-py's output is not byte-reproducible, so the
# component is stamped with the hash of its sources (../wasm-common/stamp.py).
set -eu
cd "$(dirname "$0")"
COMPONENTIZE_PY=${COMPONENTIZE_PY:-componentize-py}
# The app directory is given relative (its path ends up in the component) and
# holds nothing but the app; pycache is off so no stray .pyc gets bundled.
export PYTHONDONTWRITEBYTECODE=1
"$COMPONENTIZE_PY" -q -d ../../../wit/message-server.wit -w message-server-actor \
    componentize --stub-wasi -p app greeter_app -o greeter.wasm.tmp
${PYTHON:-python3} ../wasm-common/stamp.py add greeter.wasm.tmp app/greeter_app.py ../../../wit/message-server.wit
mv greeter.wasm.tmp greeter.wasm
