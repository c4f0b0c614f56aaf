package anthropic

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// ParamError reports a field of an OpenAI chat request that an Anthropic upstream
// cannot honour, or that is malformed. The API answers it with 400 invalid_request
// and Param as the error's param. Message is safe to show the client: it names
// fields and types, never request content.
type ParamError struct {
	Param   string
	Message string
}

func (e *ParamError) Error() string { return e.Param + ": " + e.Message }

func paramErr(param, format string, args ...any) *ParamError {
	return &ParamError{Param: param, Message: fmt.Sprintf(format, args...)}
}

// Fields of a chat request that are translated, dropped because they do not change
// the answer, or refused unless they hold their default value.
var (
	translatedFields = []string{
		"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p",
		"stop", "stream", "stream_options", "user", "safety_identifier", "tools",
		"tool_choice", "parallel_tool_calls",
	}
	// droppedFields do not change what the model answers.
	droppedFields = []string{"seed", "store", "metadata", "service_tier", "prompt_cache_key"}
)

// ChatRequestToMessages translates an OpenAI chat completions request, given as its
// top-level fields, into the body of an Anthropic POST /v1/messages call for
// upstreamModel. System and developer messages become the system prompt;
// consecutive turns of one role are merged, as Anthropic requires alternation; tool
// calls and tool results become tool_use and tool_result blocks. max_tokens, which
// Anthropic requires, is defaultMaxTokens when the request sets neither
// max_completion_tokens nor max_tokens.
//
// A field Anthropic cannot honour (n > 1, logprobs, a JSON response_format, audio,
// penalties, an unknown field) gives a *ParamError rather than a silently different
// answer.
func ChatRequestToMessages(body map[string]json.RawMessage, upstreamModel string, defaultMaxTokens int64) ([]byte, error) {
	if err := checkFields(body); err != nil {
		return nil, err
	}
	req := messagesRequest{Model: upstreamModel, MaxTokens: defaultMaxTokens}

	var err error
	if req.System, req.Messages, err = translateMessages(body["messages"]); err != nil {
		return nil, err
	}
	for _, name := range []string{"max_tokens", "max_completion_tokens"} { // the latter wins
		if raw, ok := present(body, name); ok {
			n, err := strconv.ParseInt(string(raw), 10, 64)
			if err != nil || n < 1 {
				return nil, paramErr(name, "must be a positive integer")
			}
			req.MaxTokens = n
		}
	}
	if req.MaxTokens < 1 {
		return nil, paramErr("max_tokens", "is required by this model")
	}
	if req.Temperature, err = floatField(body, "temperature", 0, 1); err != nil {
		return nil, err
	}
	if req.TopP, err = floatField(body, "top_p", 0, 1); err != nil {
		return nil, err
	}
	if req.StopSequences, err = stopSequences(body); err != nil {
		return nil, err
	}
	if raw, ok := present(body, "stream"); ok {
		if err := json.Unmarshal(raw, &req.Stream); err != nil {
			return nil, paramErr("stream", "must be a boolean")
		}
	}
	for _, name := range []string{"safety_identifier", "user"} { // the latter wins
		if raw, ok := present(body, name); ok {
			var user string
			if err := json.Unmarshal(raw, &user); err != nil {
				return nil, paramErr(name, "must be a string")
			}
			if user != "" {
				req.Metadata = &metadata{UserID: user}
			}
		}
	}
	if req.Tools, req.ToolChoice, err = translateTools(body); err != nil {
		return nil, err
	}
	out, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode messages request: %w", err)
	}
	return out, nil
}

// present returns the named field unless it is absent or null.
func present(body map[string]json.RawMessage, name string) (json.RawMessage, bool) {
	raw, ok := body[name]
	raw = bytes.TrimSpace(raw)
	if !ok || len(raw) == 0 || string(raw) == "null" {
		return nil, false
	}
	return raw, true
}

// checkFields refuses the fields that would change the answer if ignored, unless
// they hold their default value, and any field it does not know.
func checkFields(body map[string]json.RawMessage) error {
	var unknown []string
	for name, raw := range body {
		if slices.Contains(translatedFields, name) || slices.Contains(droppedFields, name) {
			continue
		}
		if _, ok := present(body, name); !ok {
			continue
		}
		if reason, known := refusal(name, raw); known {
			if reason != "" {
				return paramErr(name, "%s", reason)
			}
			continue
		}
		unknown = append(unknown, name)
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return paramErr(unknown[0], "unrecognized request argument")
	}
	return nil
}

// refusal says why a field with value raw cannot be honoured ("" when its value is
// the default), and whether the field is known at all.
func refusal(name string, raw json.RawMessage) (reason string, known bool) {
	isDefault := func(def ...string) bool {
		var v, d any
		if json.Unmarshal(raw, &v) != nil {
			return false
		}
		for _, s := range def {
			if json.Unmarshal([]byte(s), &d) == nil && reflect.DeepEqual(v, d) {
				return true
			}
		}
		return false
	}
	switch name {
	case "n":
		if !isDefault("1") {
			return "only n=1 is supported by this model", true
		}
	case "logprobs":
		if !isDefault("false") {
			return "logprobs are not supported by this model", true
		}
	case "top_logprobs":
		if !isDefault("0") {
			return "logprobs are not supported by this model", true
		}
	case "response_format":
		if !isDefault(`{"type":"text"}`) {
			return "only the text response format is supported by this model", true
		}
	case "frequency_penalty", "presence_penalty":
		if !isDefault("0") {
			return "is not supported by this model", true
		}
	case "logit_bias":
		if !isDefault("{}") {
			return "is not supported by this model", true
		}
	case "modalities":
		if !isDefault(`["text"]`) {
			return "only text output is supported by this model", true
		}
	case "audio", "prediction", "reasoning_effort", "verbosity", "web_search_options":
		return "is not supported by this model", true
	case "functions", "function_call":
		if !isDefault("[]") {
			return "is not supported by this model; use tools", true
		}
	default:
		return "", false
	}
	return "", true
}

func floatField(body map[string]json.RawMessage, name string, lo, hi float64) (*float64, error) {
	raw, ok := present(body, name)
	if !ok {
		return nil, nil
	}
	var v float64
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, paramErr(name, "must be a number")
	}
	if v < lo || v > hi {
		return nil, paramErr(name, "must be between %g and %g for this model", lo, hi)
	}
	return &v, nil
}

func stopSequences(body map[string]json.RawMessage) ([]string, error) {
	raw, ok := present(body, "stop")
	if !ok {
		return nil, nil
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		if one == "" {
			return nil, nil
		}
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, paramErr("stop", "must be a string or an array of strings")
	}
	return slices.DeleteFunc(many, func(s string) bool { return s == "" }), nil
}

// translateMessages turns OpenAI's messages into Anthropic's system prompt and turns.
func translateMessages(raw json.RawMessage) (string, []turn, error) {
	var msgs []chatMessage
	if err := json.Unmarshal(raw, &msgs); err != nil || len(msgs) == 0 {
		return "", nil, paramErr("messages", "must be a non-empty array of messages")
	}
	var system []string
	var turns []turn
	add := func(role string, blocks []block) {
		if len(blocks) == 0 {
			return
		}
		if n := len(turns); n > 0 && turns[n-1].Role == role {
			turns[n-1].Content = append(turns[n-1].Content, blocks...)
			return
		}
		turns = append(turns, turn{Role: role, Content: blocks})
	}
	for i, m := range msgs {
		param := "messages[" + strconv.Itoa(i) + "]"
		switch m.Role {
		case "system", "developer":
			texts, err := textParts(m.Content, param+".content")
			if err != nil {
				return "", nil, err
			}
			system = append(system, texts...)
		case "user":
			blocks, err := contentBlocks(m.Content, param+".content", true)
			if err != nil {
				return "", nil, err
			}
			add("user", blocks)
		case "assistant":
			if len(m.FunctionCall) > 0 && string(m.FunctionCall) != "null" {
				return "", nil, paramErr(param+".function_call", "is not supported by this model; use tool_calls")
			}
			if len(m.Audio) > 0 && string(m.Audio) != "null" {
				return "", nil, paramErr(param+".audio", "is not supported by this model")
			}
			blocks, err := contentBlocks(m.Content, param+".content", false)
			if err != nil {
				return "", nil, err
			}
			for j, tc := range m.ToolCalls {
				b, err := toolUse(tc, param+".tool_calls["+strconv.Itoa(j)+"]")
				if err != nil {
					return "", nil, err
				}
				blocks = append(blocks, b)
			}
			add("assistant", blocks)
		case "tool":
			if m.ToolCallID == "" {
				return "", nil, paramErr(param+".tool_call_id", "is required")
			}
			content, err := contentBlocks(m.Content, param+".content", true)
			if err != nil {
				return "", nil, err
			}
			add("user", []block{{Type: "tool_result", ToolUseID: m.ToolCallID, Content: content}})
		default:
			return "", nil, paramErr(param+".role", "must be system, developer, user, assistant or tool")
		}
	}
	if len(turns) == 0 {
		return "", nil, paramErr("messages", "must contain a user or assistant message with content")
	}
	return strings.Join(system, "\n\n"), turns, nil
}

// toolUse turns an assistant's tool call into a tool_use block.
func toolUse(tc chatToolCall, param string) (block, error) {
	if tc.Type != "" && tc.Type != "function" {
		return block{}, paramErr(param+".type", "only function tool calls are supported by this model")
	}
	if tc.ID == "" || tc.Function.Name == "" {
		return block{}, paramErr(param, "needs an id and a function name")
	}
	input := json.RawMessage(`{}`)
	if args := strings.TrimSpace(tc.Function.Arguments); args != "" {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal([]byte(args), &obj); err != nil || obj == nil {
			return block{}, paramErr(param+".function.arguments", "must be a JSON object")
		}
		input = json.RawMessage(args)
	}
	return block{Type: "tool_use", ID: tc.ID, Name: tc.Function.Name, Input: input}, nil
}

// textParts returns the texts of a system message's content: a string or text parts.
func textParts(raw json.RawMessage, param string) ([]string, error) {
	blocks, err := contentBlocks(raw, param, false)
	if err != nil {
		return nil, err
	}
	texts := make([]string, 0, len(blocks))
	for _, b := range blocks {
		texts = append(texts, b.Text)
	}
	return texts, nil
}

// contentBlocks turns a message's content (null, a string, or content parts) into
// blocks, skipping empty texts, which Anthropic refuses. Images are allowed only
// where images may appear.
func contentBlocks(raw json.RawMessage, param string, images bool) ([]block, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, paramErr(param, "must be a string or an array of content parts")
		}
		if s == "" {
			return nil, nil
		}
		return []block{{Type: "text", Text: s}}, nil
	}
	var parts []chatPart
	if err := json.Unmarshal(raw, &parts); err != nil {
		return nil, paramErr(param, "must be a string or an array of content parts")
	}
	blocks := make([]block, 0, len(parts))
	for j, p := range parts {
		pparam := param + "[" + strconv.Itoa(j) + "]"
		switch {
		case p.Type == "text" || p.Type == "refusal":
			text := p.Text
			if p.Type == "refusal" {
				text = p.Refusal
			}
			if text != "" {
				blocks = append(blocks, block{Type: "text", Text: text})
			}
		case p.Type == "image_url" && images:
			if p.ImageURL == nil {
				return nil, paramErr(pparam+".image_url", "is required")
			}
			src, err := imageFromURL(p.ImageURL.URL, pparam+".image_url.url")
			if err != nil {
				return nil, err
			}
			blocks = append(blocks, block{Type: "image", Source: src})
		default:
			return nil, paramErr(pparam+".type", "content parts of type %q are not supported here by this model", p.Type)
		}
	}
	return blocks, nil
}

// imageMediaTypes are the image types Anthropic accepts.
var imageMediaTypes = []string{"image/jpeg", "image/png", "image/gif", "image/webp"}

// imageFromURL turns an image_url into an image source: a data: URL into base64
// data, an http(s) URL into a url source.
func imageFromURL(u, param string) (*imageSource, error) {
	if rest, ok := strings.CutPrefix(u, "data:"); ok {
		header, data, ok := strings.Cut(rest, ",")
		mediaType, params, _ := strings.Cut(header, ";")
		if !ok || !slices.Contains(strings.Split(params, ";"), "base64") {
			return nil, paramErr(param, "a data URL must be base64-encoded")
		}
		mediaType = strings.ToLower(mediaType)
		if !slices.Contains(imageMediaTypes, mediaType) {
			return nil, paramErr(param, "images must be JPEG, PNG, GIF or WebP")
		}
		if data == "" {
			return nil, paramErr(param, "the data URL holds no image")
		}
		return &imageSource{Type: "base64", MediaType: mediaType, Data: data}, nil
	}
	if lower := strings.ToLower(u); strings.HasPrefix(lower, "https://") || strings.HasPrefix(lower, "http://") {
		return &imageSource{Type: "url", URL: u}, nil
	}
	return nil, paramErr(param, "must be an http(s) or data URL")
}

// translateTools turns OpenAI's tools, tool_choice and parallel_tool_calls into
// Anthropic's tools and tool_choice.
func translateTools(body map[string]json.RawMessage) ([]tool, *toolChoice, error) {
	var tools []tool
	if raw, ok := present(body, "tools"); ok {
		var in []chatTool
		if err := json.Unmarshal(raw, &in); err != nil {
			return nil, nil, paramErr("tools", "must be an array of tools")
		}
		for i, t := range in {
			param := "tools[" + strconv.Itoa(i) + "]"
			if t.Type != "function" || t.Function == nil {
				return nil, nil, paramErr(param+".type", "only function tools are supported by this model")
			}
			if t.Function.Name == "" {
				return nil, nil, paramErr(param+".function.name", "is required")
			}
			schema := bytes.TrimSpace(t.Function.Parameters)
			if len(schema) == 0 || string(schema) == "null" {
				schema = []byte(`{"type":"object","properties":{}}`)
			} else if schema[0] != '{' {
				return nil, nil, paramErr(param+".function.parameters", "must be a JSON schema object")
			}
			tools = append(tools, tool{Name: t.Function.Name, Description: t.Function.Description, InputSchema: schema})
		}
	}

	var choice *toolChoice
	if raw, ok := present(body, "tool_choice"); ok {
		var s string
		var obj struct {
			Type     string `json:"type"`
			Function struct {
				Name string `json:"name"`
			} `json:"function"`
		}
		switch {
		case json.Unmarshal(raw, &s) == nil:
			switch s {
			case "auto":
				choice = &toolChoice{Type: "auto"}
			case "none":
				choice = &toolChoice{Type: "none"}
			case "required":
				choice = &toolChoice{Type: "any"}
			default:
				return nil, nil, paramErr("tool_choice", "must be auto, none, required or a function")
			}
		case json.Unmarshal(raw, &obj) == nil && obj.Type == "function" && obj.Function.Name != "":
			choice = &toolChoice{Type: "tool", Name: obj.Function.Name}
		default:
			return nil, nil, paramErr("tool_choice", "must be auto, none, required or a function")
		}
	}
	if raw, ok := present(body, "parallel_tool_calls"); ok {
		var parallel bool
		if err := json.Unmarshal(raw, &parallel); err != nil {
			return nil, nil, paramErr("parallel_tool_calls", "must be a boolean")
		}
		if !parallel && len(tools) > 0 {
			if choice == nil {
				choice = &toolChoice{Type: "auto"}
			}
			choice.DisableParallelToolUse = choice.Type != "none"
		}
	}
	if len(tools) == 0 {
		return nil, nil, nil // a tool_choice without tools has nothing to choose from
	}
	return tools, choice, nil
}
