;; A component importing an interface the theater host does not provide.
(component
  (import "example:missing/thing" (instance
    (export "poke" (func))
  ))
)
