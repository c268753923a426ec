module github.com/notif-dev/notif/examples/go

go 1.22

require github.com/notif-dev/notif/bindings/go v0.0.0

replace github.com/notif-dev/notif/bindings/go => ../../bindings/go
