package outbox_test

import (
	"database/sql"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cpuUse is the CPU time (user + system) used so far by the processes of
// the local brokers and by this process, read from /proc (Linux; zero
// elsewhere). PostgreSQL's includes the exited backends (the postmaster's
// children time).
type cpuUse struct {
	postgres, kafka, rabbitmq, self time.Duration
	// backends is the CPU time of each session of this process (by
	// application_name, see openPostgres), when a database was given.
	backends map[int]time.Duration
}

const clockTick = 10 * time.Millisecond // USER_HZ is 100 on Linux

func readCPU(db *sql.DB) cpuUse {
	var u cpuUse
	if db != nil {
		u.backends = map[int]time.Duration{}
		rows, err := db.Query(`SELECT pid FROM pg_stat_activity WHERE application_name = $1`, pgAppName)
		if err == nil {
			for rows.Next() {
				var pid int
				if rows.Scan(&pid) == nil {
					u.backends[pid] = procCPU(pid)
				}
			}
			rows.Close()
		}
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		u.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		stat, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		s := string(stat)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		comm := s[open+1 : end]
		f := strings.Fields(s[end+1:])
		if len(f) < 15 {
			continue
		}
		// Fields after the command: state(0) ppid(1) ... utime(11)
		// stime(12) cutime(13) cstime(14).
		n := func(i int) time.Duration {
			v, _ := strconv.ParseInt(f[i], 10, 64)
			return time.Duration(v) * clockTick
		}
		own := n(11) + n(12)
		switch {
		case comm == "postgres":
			u.postgres += own
			if !isParentOfPostgres(f[1]) {
				u.postgres += n(13) + n(14) // the postmaster: its exited backends
			}
		case comm == "java":
			if cmd, _ := os.ReadFile(d + "/cmdline"); strings.Contains(string(cmd), "kafka") {
				u.kafka += own
			}
		case comm == "beam.smp":
			u.rabbitmq += own
		}
	}
	return u
}

// isParentOfPostgres reports whether ppid is a postgres process (so the
// process is a backend, whose children time is not the server's).
func isParentOfPostgres(ppid string) bool {
	comm, err := os.ReadFile("/proc/" + ppid + "/comm")
	return err == nil && strings.TrimSpace(string(comm)) == "postgres"
}

// procCPU is the CPU time of one process so far.
func procCPU(pid int) time.Duration {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(stat)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * clockTick
}

func (u cpuUse) sub(v cpuUse) cpuUse {
	return cpuUse{u.postgres - v.postgres, u.kafka - v.kafka, u.rabbitmq - v.rabbitmq, u.self - v.self, nil}
}

// ownSessions is the CPU time this process's sessions used between v and
// u (of sessions that lived until u).
func (u cpuUse) ownSessions(v cpuUse) time.Duration {
	var d time.Duration
	for pid, t := range u.backends {
		d += t - v.backends[pid]
	}
	return d
}

// reportCPU reports the CPU microseconds per message each side used
// since start: pg-all (every PostgreSQL process: other clients of the
// server and autovacuum included), pg-own (this process's sessions only,
// with db), broker (Kafka's or RabbitMQ's, other clients included) and go
// (this process: the relay, the client library).
func reportCPU(b *testing.B, db *sql.DB, start cpuUse, msgs int) {
	end := readCPU(db)
	d := end.sub(start)
	per := func(t time.Duration) float64 { return float64(t.Microseconds()) / float64(msgs) }
	b.ReportMetric(per(d.postgres), "pg-all-cpu-µs/msg")
	if db != nil {
		b.ReportMetric(per(end.ownSessions(start)), "pg-own-cpu-µs/msg")
	}
	b.ReportMetric(per(d.kafka+d.rabbitmq), "broker-cpu-µs/msg")
	b.ReportMetric(per(d.self), "go-cpu-µs/msg")
}
