package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive/chain"
	"github.com/portcullis-gw/portcullis/shared/audit"
)

// auditPartitionLock is the pg_advisory_xact_lock key that serialises the creation of
// audit partitions across control-plane replicas ("pcauditp" as 8 bytes).
const auditPartitionLock int64 = 0x7063617564697470

// auditRegion is what an archived region must look like (the admin API's region
// names). It keeps partition names and the partition bound literal safe.
var auditRegion = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)

// ValidAuditRegion reports whether region can be archived.
func ValidAuditRegion(region string) bool { return auditRegion.MatchString(region) }

// AuditEvent is an audit event ready to archive: decoded, and its canonical JSON
// (chain.Canonical), which is what the chain hash covers.
type AuditEvent struct {
	Event audit.Event
	JSON  []byte
}

// AuditAppend is what AppendAudit did with a batch.
type AuditAppend struct {
	Stored     int // events archived now
	Duplicates int // events whose request id the region had archived already, or repeated in the batch
}

// AppendAudit archives events of region in their order, in one transaction: under
// the region's chain lock, events whose request id the region already holds are
// skipped and the others get the next seqs and their chain hashes, and are added to
// the hourly usage rollup and the clients' source networks. Redelivered and
// replayed events are thus archived once, and concurrent callers (control-plane
// replicas) append whole batches one after the other. Partitions missing for the
// events' months are created first. Every event must be of region.
func (s *Store) AppendAudit(ctx context.Context, region string, events []AuditEvent) (AuditAppend, error) {
	if !ValidAuditRegion(region) {
		return AuditAppend{}, fmt.Errorf("archive audit events: invalid region %q", region)
	}
	for _, e := range events {
		if e.Event.Region != region {
			return AuditAppend{}, fmt.Errorf("archive audit events: an event of region %q in a batch of %q", e.Event.Region, region)
		}
	}
	if len(events) == 0 {
		return AuditAppend{}, nil
	}
	res, err := s.appendAudit(ctx, region, events)
	if isMissingPartition(err) {
		if err := s.createAuditPartitions(ctx, region, events); err != nil {
			return AuditAppend{}, err
		}
		res, err = s.appendAudit(ctx, region, events)
	}
	if err != nil {
		return AuditAppend{}, fmt.Errorf("archive audit events of region %s: %w", region, err)
	}
	return res, nil
}

// auditColumns are the columns AppendAudit copies, in auditRow's order.
var auditColumns = []string{
	"region", "seq", "ts", "request_id", "worker", "client_id", "tenant_id", "operation", "model", "provider",
	"deployment", "key_version", "prompt_hash", "response_hash", "tokens_in", "tokens_out", "cost_usd_micros",
	"latency_ms", "upstream_latency_ms", "status", "error_code", "stream", "fallback", "fallback_model",
	"fallback_reason", "flagged", "flags", "source_net", "headers", "event", "prev_hash", "chain_hash",
	"client_request_id",
}

func auditRow(seq int64, e AuditEvent, prev, hash string) []any {
	ev := e.Event
	flags, headers := ev.Flags, ev.Headers
	if flags == nil {
		flags = []audit.Flag{}
	}
	if headers == nil {
		headers = map[string]string{}
	}
	return []any{
		ev.Region, seq, ev.TS, ev.RequestID, ev.Worker, ev.ClientID, ev.TenantID, ev.Operation, ev.Model, ev.Provider,
		ev.Deployment, ev.KeyVersion, ev.PromptHash, ev.ResponseHash, ev.TokensIn, ev.TokensOut, ev.CostUSDMicros,
		ev.LatencyMS, ev.UpstreamLatencyMS, ev.Status, ev.ErrorCode, ev.Stream, ev.Fallback, ev.FallbackModel,
		ev.FallbackReason, ev.Flagged, flags, ev.SourceNet, headers, e.JSON, prev, hash,
		ev.ClientRequestID,
	}
}

func (s *Store) appendAudit(ctx context.Context, region string, events []AuditEvent) (AuditAppend, error) {
	var res AuditAppend
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO audit_chain (region, seq, head) VALUES ($1, 0, $2)
			ON CONFLICT (region) DO NOTHING`, region, chain.Genesis(region)); err != nil {
			return fmt.Errorf("create chain head: %w", err)
		}
		var seq int64
		var head string
		if err := tx.QueryRow(ctx, `SELECT seq, head FROM audit_chain WHERE region = $1 FOR UPDATE`, region).Scan(&seq, &head); err != nil {
			return fmt.Errorf("lock chain head: %w", err)
		}

		ids := make([]string, 0, len(events))
		inBatch := make(map[string]bool, len(events))
		for _, e := range events {
			if !inBatch[e.Event.RequestID] {
				inBatch[e.Event.RequestID] = true
				ids = append(ids, e.Event.RequestID)
			}
		}
		rows, err := tx.Query(ctx, `INSERT INTO audit_request_ids (region, request_id)
			SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING RETURNING request_id`, region, ids)
		if err != nil {
			return fmt.Errorf("record request ids: %w", err)
		}
		fresh, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("record request ids: %w", err)
		}
		isNew := make(map[string]bool, len(fresh))
		for _, id := range fresh {
			isNew[id] = true
		}

		res = AuditAppend{}
		copyRows := make([][]any, 0, len(fresh))
		archived := make([]*audit.Event, 0, len(fresh))
		for _, e := range events {
			if !isNew[e.Event.RequestID] {
				res.Duplicates++
				continue
			}
			delete(isNew, e.Event.RequestID) // a repeat later in the batch is a duplicate
			seq++
			hash := chain.Link(head, e.JSON)
			copyRows = append(copyRows, auditRow(seq, e, head, hash))
			archived = append(archived, &e.Event)
			head = hash
		}
		res.Stored = len(copyRows)
		if len(copyRows) == 0 {
			return nil
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"audit_events"}, auditColumns, pgx.CopyFromRows(copyRows)); err != nil {
			return fmt.Errorf("insert events: %w", err)
		}
		if err := addUsage(ctx, tx, archived); err != nil {
			return err
		}
		if err := addTraffic(ctx, tx, archived); err != nil {
			return err
		}
		if err := recordNetworks(ctx, tx, archived); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE audit_chain SET seq = $2, head = $3, updated_at = now() WHERE region = $1`,
			region, seq, head); err != nil {
			return fmt.Errorf("advance chain head: %w", err)
		}
		return nil
	})
	return res, err
}

// isMissingPartition reports whether err is PostgreSQL refusing a row no partition takes.
func isMissingPartition(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && pg.Code == codeCheckViolation && strings.HasPrefix(pg.Message, "no partition of relation")
}

// createAuditPartitions creates, if missing, region's partition and its monthly
// partitions for the events' timestamps. Each is created as a plain table and then
// attached, which locks the parent table only against other schema changes (SHARE
// UPDATE EXCLUSIVE), not against the exports and inserts running meanwhile; CREATE
// TABLE … PARTITION OF would wait for every open export to end and stall the ingest
// of every region behind it. An advisory lock serialises replicas.
func (s *Store) createAuditPartitions(ctx context.Context, region string, events []AuditEvent) error {
	months := map[time.Time]bool{}
	for _, e := range events {
		t := e.Event.TS.UTC()
		months[time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)] = true
	}
	parent := auditRegionTable(region)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, auditPartitionLock); err != nil {
			return err
		}
		// region matches auditRegion, so it needs no escaping inside the literal.
		if err := attachPartition(ctx, tx, "audit_events", parent, fmt.Sprintf("IN ('%s')", region), "PARTITION BY RANGE (ts)"); err != nil {
			return err
		}
		for m := range months {
			const bound = "2006-01-02 15:04:05Z07:00"
			values := fmt.Sprintf("FROM ('%s') TO ('%s')", m.Format(bound), m.AddDate(0, 1, 0).Format(bound))
			if err := attachPartition(ctx, tx, parent, parent+"@"+m.Format("2006-01"), values, ""); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("create audit partitions of region %s: %w", region, err)
	}
	return nil
}

// attachPartition creates table shaped like audit_events (partitioned by
// partitionBy, if given) and attaches it to parent FOR VALUES values, unless a
// partition of that name exists.
func attachPartition(ctx context.Context, tx pgx.Tx, parent, table, values, partitionBy string) error {
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_class WHERE oid = to_regclass($1) AND relispartition)`,
		pgx.Identifier{table}.Sanitize()).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	t, p := pgx.Identifier{table}.Sanitize(), pgx.Identifier{parent}.Sanitize()
	if _, err := tx.Exec(ctx, fmt.Sprintf(`CREATE TABLE %s (LIKE audit_events INCLUDING DEFAULTS) %s`, t, partitionBy)); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, fmt.Sprintf(`ALTER TABLE %s ATTACH PARTITION %s FOR VALUES %s`, p, t, values))
	return err
}

// auditRegionTable is the name of region's partition of audit_events: the region's
// own name when short, else a hash of it. Region names have no '#' or '@', so no
// region's table can be named like another's or like a monthly partition.
func auditRegionTable(region string) string {
	if len(region) <= 40 {
		return "audit_events_" + region
	}
	sum := sha256.Sum256([]byte(region))
	return "audit_events_#" + hex.EncodeToString(sum[:8])
}

// AuditQuery selects the events of an export.
type AuditQuery struct {
	Region string
	From   time.Time // inclusive
	To     time.Time // exclusive
	// ClientID, when set, keeps only that client's events with ts in [From, To).
	ClientID string
}

// AuditRow is one archived event as exported.
type AuditRow struct {
	Seq       int64
	PrevHash  string
	ChainHash string
	Event     []byte // canonical JSON
}

// AuditHead is a region's chain head: its newest seq and that event's chain hash
// (seq 0 and the genesis hash before its first event), as of At.
type AuditHead struct {
	Seq  int64
	Hash string
	At   time.Time
}

// ExportAudit calls fn with each event q selects, in seq order, and returns the
// region's chain head, all read in one snapshot. It streams: rows are read from the
// database as fn consumes them.
//
// Without a client filter the rows are one unbroken piece of the chain: every event
// from the first one with ts in [From, To) to the last one, including the few whose
// ts is outside the range because they reached the archive late. With a client
// filter they are that client's events with ts in the range.
func (s *Store) ExportAudit(ctx context.Context, q AuditQuery, fn func(AuditRow) error) (AuditHead, error) {
	var head AuditHead
	opts := pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
	err := pgx.BeginTxFunc(ctx, s.pool, opts, func(tx pgx.Tx) error {
		// The first query takes the snapshot every later one reads.
		if err := tx.QueryRow(ctx, `SELECT now(),
			COALESCE((SELECT seq FROM audit_chain WHERE region = $1), 0),
			COALESCE((SELECT head FROM audit_chain WHERE region = $1), $2)`,
			q.Region, chain.Genesis(q.Region)).Scan(&head.At, &head.Seq, &head.Hash); err != nil {
			return fmt.Errorf("read chain head: %w", err)
		}
		var rows pgx.Rows
		var err error
		if q.ClientID == "" {
			var lo, hi *int64
			if err := tx.QueryRow(ctx, `SELECT min(seq), max(seq) FROM audit_events
				WHERE region = $1 AND ts >= $2 AND ts < $3`, q.Region, q.From, q.To).Scan(&lo, &hi); err != nil {
				return fmt.Errorf("find the range's seqs: %w", err)
			}
			if lo == nil {
				return nil
			}
			rows, err = tx.Query(ctx, `SELECT seq, prev_hash, chain_hash, event FROM audit_events
				WHERE region = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq`, q.Region, *lo, *hi)
		} else {
			rows, err = tx.Query(ctx, `SELECT seq, prev_hash, chain_hash, event FROM audit_events
				WHERE region = $1 AND client_id = $2 AND ts >= $3 AND ts < $4 ORDER BY seq`,
				q.Region, q.ClientID, q.From, q.To)
		}
		if err != nil {
			return fmt.Errorf("read events: %w", err)
		}
		defer rows.Close()
		var r AuditRow
		for rows.Next() {
			if err := rows.Scan(&r.Seq, &r.PrevHash, &r.ChainHash, &r.Event); err != nil {
				return fmt.Errorf("read events: %w", err)
			}
			if err := fn(r); err != nil {
				return err
			}
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read events: %w", err)
		}
		return nil
	})
	if err != nil {
		return AuditHead{}, fmt.Errorf("export audit events of region %s: %w", q.Region, err)
	}
	return head, nil
}
