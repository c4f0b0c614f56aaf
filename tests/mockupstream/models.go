package mockupstream

import "net/http"

type modelList struct {
	Object string  `json:"object"`
	Data   []model `json:"data"`
}

type model struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

// models answers GET /v1/models with Options.Models, owned by Options.Name.
func (s *Server) models(w http.ResponseWriter, _ *http.Request, _ []byte, fail Failure) error {
	out := modelList{Object: "list", Data: make([]model, len(s.opts.Models))}
	for i, id := range s.opts.Models {
		out.Data[i] = model{ID: id, Object: "model", Created: created, OwnedBy: s.opts.Name}
	}
	return writeJSON(w, out, fail)
}
