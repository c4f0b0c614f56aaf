package signin

import (
	"bytes"
	"html/template"

	"github.com/labstack/echo/v4"
)

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{{if .Next}}<meta http-equiv="refresh" content="0;url={{.Next}}">{{end}}
<title>{{.Title}} · Portcullis</title>
</head>
<body>
<main>
<h1>{{.Title}}</h1>
<p>{{.Message}}</p>
{{if .Next}}<p><a href="{{.Next}}">Continue</a></p>{{else}}<p><a href="/">Back to the console</a></p>{{end}}
</main>
</body>
</html>
`))

// page answers an HTML page with a title and a message (never anything the request
// sent, beyond what the caller put in message).
func page(c echo.Context, status int, title, message string) error {
	return render(c, status, map[string]string{"Title": title, "Message": message})
}

// continuePage answers a page that moves the browser on to next.
func continuePage(c echo.Context, next string) error {
	return render(c, 200, map[string]string{"Title": "Signed in", "Message": "You are signed in.", "Next": next})
}

func render(c echo.Context, status int, data map[string]string) error {
	var b bytes.Buffer
	if err := pageTmpl.Execute(&b, data); err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	return c.HTMLBlob(status, b.Bytes())
}
