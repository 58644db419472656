module example.com/chanadapter

go 1.26.0

require (
	github.com/ferrymsg/ferry v0.0.0
	go.uber.org/goleak v1.3.0
)

require github.com/cenkalti/backoff/v4 v4.3.0 // indirect

replace github.com/ferrymsg/ferry => ../../..
