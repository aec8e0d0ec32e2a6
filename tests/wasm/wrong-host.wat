;; Imports message-server-host with a `send` of the wrong type: refused at instantiation.
(component
  (import "theater:simple/message-server-host" (instance
    (export "send" (func (param "n" u32)))
  ))
)
