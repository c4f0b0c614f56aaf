module github.com/portcullis-gw/portcullis/web

go 1.26.8
