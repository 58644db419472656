// Package otelferry is ferry's OpenTelemetry instrumentation: traces and
// metrics per the OpenTelemetry messaging semantic conventions, trace
// context carried in message headers, and consumer lag. It imports only
// the OpenTelemetry API; the SDK and exporters are the application's.
package otelferry
