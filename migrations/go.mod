module github.com/portcullis-gw/portcullis/migrations

go 1.26.8
