;; A valid component that imports nothing and exports no handler interface.
(component
  (core module $m (func (export "f")))
  (core instance $i (instantiate $m))
  (func $f (canon lift (core func $i "f")))
  (export "unrelated" (func $f))
)
