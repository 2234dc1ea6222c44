package sessions

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/sessionstorage/sessions/serializer"
)

// LoadConfig reads a Config from a TOML file. TOML because it is made for
// hand-edited configuration (comments, no indentation traps) and
// github.com/BurntSushi/toml reports keys it did not expect, so a typo is
// an error rather than a silently ignored setting. See ParseConfig for the
// format.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("sessions: reading config: %w", err)
	}
	cfg, err := ParseConfig(string(data))
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig reads a Config from TOML text:
//
//	storage = "main"              # a name below, "memory", or a URL
//	cluster = true
//	timeout = "30m"               # Go durations
//	idle_evict = "5m"
//	write_behind = "100ms"
//	storage_timeout = "2s"
//	key_prefix = "sess:"
//	codec = "msgpack"             # msgpack, json or gob
//	max_session_size = 524288
//	max_key_length = 256
//	encryption_keys = ["${SESSION_KEY}"]  # base64 AES keys; the first encrypts
//
//	[cookie]
//	name = "session"
//	path = "/"
//	domain = ""
//	same_site = "lax"             # lax, strict or none
//	insecure = false
//	allow_script = false
//	persist = false
//
//	[storages.main]
//	url = "redis://:${REDIS_PASSWORD}@10.0.0.5:6379/0"
//	options = { pool_size = "20" }
//
//	[storages.local]
//	url = "bolt:///var/lib/app/sessions.db"
//
// Every setting is optional and defaults as in Config. String values may
// use ${NAME} for the environment variable NAME (an unset one is an error;
// $$ is a literal $), so secrets stay out of the file. Unknown keys are
// errors naming the key.
func ParseConfig(text string) (Config, error) {
	var f struct {
		Storage        string
		Cluster        bool
		Timeout        duration `toml:"timeout"`
		IdleEvict      duration `toml:"idle_evict"`
		WriteBehind    duration `toml:"write_behind"`
		StorageTimeout duration `toml:"storage_timeout"`
		KeyPrefix      string   `toml:"key_prefix"`
		Codec          string
		MaxSessionSize int      `toml:"max_session_size"`
		MaxKeyLength   int      `toml:"max_key_length"`
		EncryptionKeys []string `toml:"encryption_keys"`
		Cookie         struct {
			Name, Path, Domain string
			SameSite           string `toml:"same_site"`
			Insecure           bool
			AllowScript        bool `toml:"allow_script"`
			Persist            bool
		}
		Storages map[string]struct {
			URL     string
			Options map[string]string
		}
	}
	md, err := toml.Decode(text, &f)
	if err != nil {
		return Config{}, fmt.Errorf("sessions: config: %w", err)
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		keys := make([]string, len(undecoded))
		for i, k := range undecoded {
			keys[i] = k.String()
		}
		return Config{}, fmt.Errorf("sessions: config: unknown setting %s", strings.Join(keys, ", "))
	}
	var errs []error
	expand := func(where, s string) string {
		out, err := expandEnv(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
		}
		return out
	}
	cfg := Config{
		Storage:        expand("storage", f.Storage),
		Cluster:        f.Cluster,
		Timeout:        time.Duration(f.Timeout),
		IdleEvict:      time.Duration(f.IdleEvict),
		WriteBehind:    time.Duration(f.WriteBehind),
		StorageTimeout: time.Duration(f.StorageTimeout),
		KeyPrefix:      expand("key_prefix", f.KeyPrefix),
		MaxSessionSize: f.MaxSessionSize,
		MaxKeyLength:   f.MaxKeyLength,
		Cookie: CookieConfig{
			Name: f.Cookie.Name, Path: f.Cookie.Path, Domain: expand("cookie.domain", f.Cookie.Domain),
			Insecure: f.Cookie.Insecure, AllowScript: f.Cookie.AllowScript, Persist: f.Cookie.Persist,
		},
	}
	for i, k := range f.EncryptionKeys {
		where := fmt.Sprintf("encryption_keys[%d]", i)
		text := expand(where, k)
		key, err := base64.StdEncoding.DecodeString(text)
		if err != nil {
			key, err = base64.RawURLEncoding.DecodeString(text)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: not base64: %w", where, err))
			continue
		}
		cfg.EncryptionKeys = append(cfg.EncryptionKeys, key)
	}
	switch strings.ToLower(f.Codec) {
	case "", "msgpack":
	case "json":
		cfg.Codec = serializer.JSON
	case "gob":
		cfg.Codec = serializer.Gob
	default:
		errs = append(errs, fmt.Errorf("codec %q: want msgpack, json or gob", f.Codec))
	}
	switch strings.ToLower(f.Cookie.SameSite) {
	case "", "lax":
	case "strict":
		cfg.Cookie.SameSite = http.SameSiteStrictMode
	case "none":
		cfg.Cookie.SameSite = http.SameSiteNoneMode
	default:
		errs = append(errs, fmt.Errorf("cookie.same_site %q: want lax, strict or none", f.Cookie.SameSite))
	}
	if len(f.Storages) > 0 {
		cfg.Storages = make(map[string]StorageConfig, len(f.Storages))
		names := make([]string, 0, len(f.Storages))
		for name := range f.Storages {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			s := f.Storages[name]
			if s.URL == "" {
				errs = append(errs, fmt.Errorf("storages.%s: url is required", name))
				continue
			}
			sc := StorageConfig{URL: expand("storages."+name+".url", s.URL)}
			if len(s.Options) > 0 {
				sc.Options = make(map[string]string, len(s.Options))
				for k, v := range s.Options {
					sc.Options[k] = expand("storages."+name+".options."+k, v)
				}
			}
			cfg.Storages[name] = sc
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, fmt.Errorf("sessions: config: %w", err)
	}
	return cfg, nil
}

// expandEnv replaces ${NAME} with the environment variable NAME; $$ is a
// literal $. An unset variable, or a $ not followed by { or $, is an error.
func expandEnv(s string) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var b strings.Builder
	for {
		i := strings.IndexByte(s, '$')
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		b.WriteString(s[:i])
		s = s[i+1:]
		switch {
		case strings.HasPrefix(s, "$"):
			b.WriteByte('$')
			s = s[1:]
		case strings.HasPrefix(s, "{"):
			end := strings.IndexByte(s, '}')
			if end < 0 {
				return "", errors.New("unterminated ${ in value")
			}
			name := s[1:end]
			v, ok := os.LookupEnv(name)
			if !ok {
				return "", fmt.Errorf("environment variable %s is not set", name)
			}
			b.WriteString(v)
			s = s[end+1:]
		default:
			return "", errors.New("a $ must start ${NAME} or be written $$")
		}
	}
}

// duration decodes a TOML string such as "30m" with time.ParseDuration.
type duration time.Duration

func (d *duration) UnmarshalText(text []byte) error {
	v, err := time.ParseDuration(string(text))
	if err != nil {
		return err
	}
	*d = duration(v)
	return nil
}
