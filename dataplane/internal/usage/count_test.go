package usage

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// The wanted counts were checked against js-tiktoken 1.0.21's o200k_base.
func TestCountText(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want int64
	}{
		{name: "empty", in: "", want: 0},
		{name: "two words", in: "hello world", want: 2},
		{name: "punctuation", in: "Hello, world!", want: 4},
		{name: "accented", in: "café crème brûlée", want: 5},
		{name: "CJK", in: "日本語のテキスト", want: 6},
		{name: "emoji", in: "👍🏽 ok", want: 4},
		{name: "invalid UTF-8 never fails", in: "\xff\xfe\xfd", want: 1},
		{name: "code", in: "func main() {\n\tfmt.Println(\"hi\")\n}", want: 10},
		{name: "one blank line", in: "a\n\n b", want: 3},
		{name: "special token text is plain text", in: "<|endoftext|>", want: 7},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := CountText(tc.in); got != tc.want {
				t.Errorf("CountText(%q) = %d, want %d", tc.in, got, tc.want)
			}
		})
	}
}

// TestCountTextSegments checks that counting long text in segments (segmentEnd)
// gives exactly the tokenizer's count of the whole text.
func TestCountTextSegments(t *testing.T) {
	codec, err := loadCodec()
	if err != nil {
		t.Fatal(err)
	}
	prose := "The quick brown fox jumps over the lazy dog; naïve café, 日本語のテキスト. "
	code := "func main() {\n\tfmt.Println(\"hi\") // greet\n\n\tif x > 1 {\r\n\t\treturn\n\t}\n}\n"
	tests := []struct {
		name string
		in   string
	}{
		{name: "prose without line breaks", in: strings.Repeat(prose, 40)},
		{name: "prose with line breaks", in: strings.Repeat(prose+"\n", 40)},
		{name: "code", in: strings.Repeat(code, 30)},
		{name: "blank lines and indentation", in: strings.Repeat("x\n\n    \n  \t\n   y", 200)},
		{name: "space newline runs", in: strings.Repeat(" \n", 1500)},
		{name: "CRLF runs", in: strings.Repeat("\r\n \r\n", 700)},
		{name: "line break then slash", in: strings.Repeat("!\n/\n/ path/to\n//x\n", 150)},
		{name: "punctuation before line breaks", in: strings.Repeat("end.\n\n", 500)},
		{name: "long spaces", in: strings.Repeat(" ", 3000) + "\n" + strings.Repeat(" ", 300) + "word"},
		{name: "unicode spaces", in: strings.Repeat("\u3000\n\u00a0 \u2028x", 400)},
		{name: "digits and newlines", in: strings.Repeat("1234567\n", 400)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.in) <= segmentBytes {
				t.Fatalf("input of %d bytes is not long enough to be segmented", len(tc.in))
			}
			want, err := codec.Count(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := CountText(tc.in); got != int64(want) {
				t.Errorf("CountText = %d, the tokenizer counts %d", got, want)
			}
		})
	}
}

func TestSegmentEnd(t *testing.T) {
	pad := strings.Repeat("a", segmentBytes)
	tests := []struct {
		name string
		in   string
		want int
	}{
		{name: "short text is one segment", in: "a\nb", want: 3},
		{name: "no line break", in: pad + "bbb", want: segmentBytes + 3},
		{name: "after the line breaks", in: pad + "b\r\n\nc", want: segmentBytes + 4},
		{name: "not before a slash", in: pad + "\n/x\ny", want: segmentBytes + 4},
		{name: "line breaks at the end", in: pad + "\n\n", want: segmentBytes + 2},
		{name: "only slashes after line breaks", in: pad + "\n/\n/", want: segmentBytes + 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := segmentEnd(tc.in); got != tc.want {
				t.Errorf("segmentEnd = %d, want %d", got, tc.want)
			}
		})
	}
}

// TestCountTextLinear guards against the tokenizer's quadratic cost on whitespace
// runs with line breaks: uncut, 1 MiB of " \n" takes many minutes. (The count runs
// in a goroutine so that a regression fails in a minute rather than at the test
// binary's timeout; it is abandoned only then.)
func TestCountTextLinear(t *testing.T) {
	in := strings.Repeat(" \n", 1<<19)
	done := make(chan int64, 1)
	go func() { done <- CountText(in) }()
	select {
	case n := <-done:
		if n < 1<<19 {
			t.Errorf("CountText = %d, want at least %d", n, 1<<19)
		}
	case <-time.After(time.Minute):
		t.Fatal("CountText of 1 MiB of whitespace runs took over a minute")
	}
}

func TestWarm(t *testing.T) {
	Warm()
	Warm()
	if _, err := loadCodec(); err != nil {
		t.Fatalf("codec: %v", err)
	}
	if got := CountText("hello world"); got != 2 {
		t.Errorf("CountText after Warm = %d, want 2", got)
	}
}

// TestCountTextConcurrent shares the codec between goroutines (run it with -race).
func TestCountTextConcurrent(t *testing.T) {
	texts := []string{"hello world", "日本語のテキスト", strings.Repeat("The quick brown fox.\n", 40)}
	want := make([]int64, len(texts))
	for i, s := range texts {
		want[i] = CountText(s)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 20 {
				k := (g + i) % len(texts)
				if got := CountText(texts[k]); got != want[k] {
					t.Errorf("goroutine %d: CountText = %d, want %d", g, got, want[k])
				}
			}
		})
	}
	wg.Wait()
}
