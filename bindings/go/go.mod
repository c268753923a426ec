module github.com/notif-dev/notif/bindings/go

go 1.22
