package adminapi

import (
	"encoding/json"
	"time"

	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
)

// item is the JSON of a stored entity: the entity's own fields followed by revision,
// created_at and updated_at.
type item[T any] store.Record[T]

type bookkeeping struct {
	Revision  int64     `json:"revision"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func (it item[T]) MarshalJSON() ([]byte, error) {
	entity, err := json.Marshal(it.Entity)
	if err != nil {
		return nil, err
	}
	meta, err := json.Marshal(bookkeeping{it.Revision, it.CreatedAt.UTC(), it.UpdatedAt.UTC()})
	if err != nil {
		return nil, err
	}
	// Both are JSON objects and every entity has at least its key field, so splice
	// them: {"name":"x"} + {"revision":1,...} = {"name":"x","revision":1,...}.
	out := make([]byte, 0, len(entity)+len(meta))
	out = append(out, entity[:len(entity)-1]...)
	out = append(out, ',')
	return append(out, meta[1:]...), nil
}
