package usage

import (
	"encoding/json"
	"errors"
	"fmt"
)

// ErrStreamOptions reports a request's stream_options that the upstream would refuse:
// not an object, or an include_usage that is not a boolean. The caller answers 400
// with param "stream_options".
var ErrStreamOptions = errors.New("invalid stream_options")

// WithStreamUsage reports whether a streamed request's client asked for usage
// (stream_options.include_usage is true) and returns the stream_options to send
// upstream instead: the client's object, its other members kept byte for byte, with
// include_usage set to true, so that the upstream reports usage in its last chunk.
// raw may be nil (stream_options absent) or null. The error wraps ErrStreamOptions.
func WithStreamUsage(raw json.RawMessage) (clientAsked bool, upstream json.RawMessage, err error) {
	if isNull(raw) {
		return false, json.RawMessage(`{"include_usage":true}`), nil
	}
	if firstByte(raw) != '{' || !json.Valid(raw) {
		return false, nil, fmt.Errorf("%w: stream_options must be an object", ErrStreamOptions)
	}
	out := make([]byte, 0, len(raw)+len(`,"include_usage":true}`))
	out = append(out, '{')
	for it := members(raw); ; {
		k, v, ok := it.next()
		if !ok {
			break
		}
		if keyIs(k, "include_usage") {
			switch string(v) { // the last one counts, as it does for a JSON parser
			case "true":
				clientAsked = true
			case "false", "null":
				clientAsked = false
			default:
				return false, nil, fmt.Errorf("%w: stream_options.include_usage must be a boolean", ErrStreamOptions)
			}
			continue
		}
		out = append(append(append(append(out, k...), ':'), v...), ',')
	}
	out = append(out, `"include_usage":true}`...)
	return clientAsked, out, nil
}
