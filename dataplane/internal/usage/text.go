package usage

// The functions below pick the generated text out of the choices of a response or a
// streamed chunk, with the scanner of jsonscan.go and without allocating. The text of
// a choice is, in the order written:
//   - "text" (completions);
//   - of "message" (responses) and "delta" (chunks): "content" (a string, or an array
//     of parts whose "text" members count), "refusal", the name and arguments of each
//     of "tool_calls" and of "function_call", and the reasoning some servers stream
//     ("reasoning_content", or else "reasoning").

// appendChoices appends the generated text of the choices array raw to dst.
func appendChoices(dst, raw []byte) []byte {
	for choices := elements(raw); ; {
		choice, ok := choices.next()
		if !ok {
			return dst
		}
		for it := members(choice); ; {
			k, v, ok := it.next()
			if !ok {
				break
			}
			switch string(name(k)) {
			case "text":
				dst = appendContent(dst, v)
			case "message", "delta":
				dst = appendOutput(dst, v)
			}
		}
	}
}

// appendOutput appends the text of a message or delta object.
func appendOutput(dst, obj []byte) []byte {
	var reasoningContent, reasoning []byte
	for it := members(obj); ; {
		k, v, ok := it.next()
		if !ok {
			break
		}
		switch string(name(k)) {
		case "content":
			dst = appendContent(dst, v)
		case "refusal":
			dst = appendString(dst, v)
		case "tool_calls":
			for calls := elements(v); ; {
				call, ok := calls.next()
				if !ok {
					break
				}
				for c := members(call); ; {
					ck, cv, ok := c.next()
					if !ok {
						break
					}
					if string(name(ck)) == "function" {
						dst = appendFunction(dst, cv)
					}
				}
			}
		case "function_call":
			dst = appendFunction(dst, v)
		case "reasoning_content":
			reasoningContent = v
		case "reasoning":
			reasoning = v
		}
	}
	n := len(dst)
	if dst = appendString(dst, reasoningContent); len(dst) == n {
		dst = appendString(dst, reasoning)
	}
	return dst
}

// appendFunction appends the name and arguments of a function call object.
func appendFunction(dst, obj []byte) []byte {
	for it := members(obj); ; {
		k, v, ok := it.next()
		if !ok {
			return dst
		}
		switch string(name(k)) {
		case "name", "arguments":
			dst = appendString(dst, v)
		}
	}
}

// appendContent appends content: a string, or an array of parts whose "text"
// members are strings.
func appendContent(dst, raw []byte) []byte {
	if firstByte(raw) != '[' {
		return appendString(dst, raw)
	}
	for parts := elements(raw); ; {
		part, ok := parts.next()
		if !ok {
			return dst
		}
		for it := members(part); ; {
			k, v, ok := it.next()
			if !ok {
				break
			}
			if string(name(k)) == "text" {
				dst = appendString(dst, v)
			}
		}
	}
}
