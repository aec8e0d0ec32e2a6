;; A core WebAssembly module: valid wasm, but not a component.
(module (func (export "handle_request")))
