// Package anthropic translates between OpenAI's chat completions API and Anthropic's
// Messages API, so that an OpenAI client can be served by an Anthropic deployment:
// ChatRequestToMessages turns a chat request into a POST /v1/messages body,
// MessageToChatCompletion turns the answer back into a chat.completion, and a
// StreamTranslator turns Anthropic's server-sent events into chat.completion.chunk
// events. ErrorToOpenAI maps an Anthropic error to the gateway's codes; ErrorBody
// and ErrorEvent render the gateway's errors in Anthropic's schema.
//
// The package does no I/O. Its functions are safe for concurrent use; a
// StreamTranslator belongs to one stream.
package anthropic
