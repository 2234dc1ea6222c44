package sessions

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"reflect"
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
//	require_storage_at_start = false       # true: New fails while the storage is unreachable
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
// Every setting is optional and defaults as in Config. Every string value
// (durations, codec, cookie settings, storage URLs and options included)
// may use ${NAME} for the environment variable NAME (an unset one is an
// error; $$ is a literal $, and a $ that starts neither is an error), so
// secrets and per-deployment values stay out of the file. Unknown keys are
// errors naming the key.
func ParseConfig(text string) (Config, error) {
	var f configFile
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
	// Every string value, wherever it is in the file, expands ${NAME}
	// before it is interpreted (durations, codec and same_site included):
	// done over the whole struct, so a setting added later expands too.
	var errs []error
	expandStrings(reflect.ValueOf(&f).Elem(), "", &errs)
	if err := errors.Join(errs...); err != nil {
		return Config{}, fmt.Errorf("sessions: config: %w", err)
	}
	durationOf := func(where, s string) time.Duration {
		if s == "" {
			return 0
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %q: want a Go duration such as 30m or 100ms", where, s))
		}
		return d
	}
	cfg := Config{
		Storage:               f.Storage,
		Cluster:               f.Cluster,
		Timeout:               durationOf("timeout", f.Timeout),
		IdleEvict:             durationOf("idle_evict", f.IdleEvict),
		WriteBehind:           durationOf("write_behind", f.WriteBehind),
		StorageTimeout:        durationOf("storage_timeout", f.StorageTimeout),
		KeyPrefix:             f.KeyPrefix,
		MaxSessionSize:        f.MaxSessionSize,
		MaxKeyLength:          f.MaxKeyLength,
		RequireStorageAtStart: f.RequireStorageAtStart,
		Cookie: CookieConfig{
			Name: f.Cookie.Name, Path: f.Cookie.Path, Domain: f.Cookie.Domain,
			Insecure: f.Cookie.Insecure, AllowScript: f.Cookie.AllowScript, Persist: f.Cookie.Persist,
		},
	}
	for i, text := range f.EncryptionKeys {
		where := fmt.Sprintf("encryption_keys[%d]", i)
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
			sc := StorageConfig{URL: s.URL}
			if len(s.Options) > 0 {
				sc.Options = make(map[string]string, len(s.Options))
				for k, v := range s.Options {
					sc.Options[k] = v
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

// configFile is the TOML file's layout. Every value written as a TOML
// string is a Go string here (durations too), so that expandStrings sees
// it before it is interpreted.
type configFile struct {
	Storage               string
	Cluster               bool
	Timeout               string `toml:"timeout"`
	IdleEvict             string `toml:"idle_evict"`
	WriteBehind           string `toml:"write_behind"`
	StorageTimeout        string `toml:"storage_timeout"`
	KeyPrefix             string `toml:"key_prefix"`
	Codec                 string
	MaxSessionSize        int      `toml:"max_session_size"`
	MaxKeyLength          int      `toml:"max_key_length"`
	EncryptionKeys        []string `toml:"encryption_keys"`
	RequireStorageAtStart bool     `toml:"require_storage_at_start"`
	Cookie                struct {
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

// expandStrings runs expandEnv over every string reachable from v (struct
// fields, slice elements, map values; not map keys), in place, appending
// an error naming the setting for each value that does not expand.
func expandStrings(v reflect.Value, where string, errs *[]error) {
	join := func(name string) string {
		if where == "" {
			return name
		}
		return where + "." + name
	}
	switch v.Kind() {
	case reflect.String:
		out, err := expandEnv(v.String())
		if err != nil {
			*errs = append(*errs, fmt.Errorf("%s: %w", where, err))
			return
		}
		v.SetString(out)
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			name := t.Field(i).Tag.Get("toml")
			if name == "" {
				name = strings.ToLower(t.Field(i).Name)
			}
			expandStrings(v.Field(i), join(name), errs)
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			expandStrings(v.Index(i), fmt.Sprintf("%s[%d]", where, i), errs)
		}
	case reflect.Map:
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
		for _, k := range keys {
			elem := reflect.New(v.Type().Elem()).Elem()
			elem.Set(v.MapIndex(k))
			expandStrings(elem, join(fmt.Sprint(k)), errs)
			v.SetMapIndex(k, elem)
		}
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			expandStrings(v.Elem(), where, errs)
		}
	}
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
