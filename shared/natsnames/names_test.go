package natsnames

import "testing"

func TestSubjectsAreSingleTokens(t *testing.T) {
	tests := []struct{ name, got, want string }{
		{"audit stream", AuditStream("eu"), "PC_AUDIT_EU"},
		{"audit subject", AuditSubject("eu", "moltbot-agent-07"), "audit.eu.moltbot-agent-07"},
		{"audit subjects", AuditSubjects("eu"), "audit.eu.>"},
		{"audit stream prefix", AuditStream("us")[:len(AuditStreamPrefix)], AuditStreamPrefix},
		{"wildcards escaped", AuditSubject("eu", "a.b*>"), "audit.eu.a_b__"},
		{"empty client", AuditSubject("us", ""), "audit.us._"},
		{"keys rotated", KeysRotatedSubject("openai"), "keys.rotated.openai"},
		{"alert", AlertSubject("token_spike", "c"), "alerts.token_spike.c"},
		{"key access", KeysAccessSubject("eu", "w.1"), "keys.access.eu.w_1"},
		{"key access of a region", KeysAccessSubjectsOf("e.u"), "keys.access.e_u.*"},
		{"health of a region", HealthSubjectsOf("eu"), "health.eu.*"},
		{"audit checkpoint", AuditCheckpointSubject("eu"), "checkpoints.audit.eu"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Fatalf("got %q, want %q", tc.got, tc.want)
			}
		})
	}
}

func TestLimitsClientKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"app-1_x", "app-1_x"},
		{"a.b", "=YS5i"},
		{"", "="},
		{"=x", "=PXg"},
		{"é", "=w6k"},
	} {
		if got := LimitsClientKey(tc.in); got != tc.want {
			t.Errorf("LimitsClientKey(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
