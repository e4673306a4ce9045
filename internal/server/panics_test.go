package server

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestAnswerPanics(t *testing.T) {
	var logs bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, nil)))
	defer slog.SetDefault(prev)

	secret := "k1:Tkl-QBd7nX1_secret"
	for _, tc := range []struct {
		name  string
		panic any
		want  string
	}{
		{"index out of range", nil, "index out of range"},
		{"a value", secret, "string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs.Reset()
			h := answerPanics(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
				if tc.panic == nil {
					var s []int
					_ = s[len(tc.name)]
				}
				panic(tc.panic)
			}))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/kms", nil))
			if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), "internal server error") {
				t.Errorf("reply %d %q, want 500 internal server error", rec.Code, rec.Body)
			}
			if !strings.Contains(logs.String(), tc.want) || !strings.Contains(logs.String(), "TestAnswerPanics") {
				t.Errorf("log %q does not name the panic (%q) and where it happened", logs.String(), tc.want)
			}
			if strings.Contains(logs.String(), secret) {
				t.Errorf("log shows the panic's value: %q", logs.String())
			}
		})
	}

	// A handler that aborts on purpose still cuts the stream.
	defer func() {
		if v := recover(); !errors.Is(v.(error), http.ErrAbortHandler) {
			t.Errorf("ErrAbortHandler did not pass: %v", v)
		}
	}()
	answerPanics(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) })).
		ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
	t.Error("ErrAbortHandler was swallowed")
}
