package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
)

// SCRAM user commands (KIP-554's AlterUserScramCredentials and
// DescribeUserScramCredentials through kadm): the password is salted here,
// so only the salted form (salt, iterations, salted password) goes to the
// broker and nothing in clear reaches its log.

func userCmd(e *env) *cobra.Command {
	c := &cobra.Command{Use: "user", Short: "Create, list and delete SCRAM users (as kafka-configs.sh --entity-type users)"}
	c.AddCommand(userCreateCmd(e), userListCmd(e), userDeleteCmd(e))
	return c
}

func parseMechanism(s string) (kadm.ScramMechanism, error) {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "SCRAM-SHA-256":
		return kadm.ScramSha256, nil
	case "SCRAM-SHA-512":
		return kadm.ScramSha512, nil
	}
	return 0, fmt.Errorf("--mechanism %q: want SCRAM-SHA-256 or SCRAM-SHA-512", s)
}

// UserResult is the outcome of creating or deleting one user's credential.
type UserResult struct {
	User      string `json:"user"`
	Mechanism string `json:"mechanism"`
	Error     string `json:"error,omitempty"`
}

func (e *env) printUserResults(out []UserResult, status, notDone string) error {
	if e.json {
		if err := e.printJSON(out); err != nil {
			return err
		}
	} else {
		t := newTable(e.out, "USER", "MECHANISM", "STATUS")
		for _, r := range out {
			t.row(r.User, r.Mechanism, orStatus(r.Error, status))
		}
		t.flush()
	}
	return failure(notDone, out, func(r UserResult) string { return r.Error })
}

func userCreateCmd(e *env) *cobra.Command {
	var mechs []string
	var password string
	var passwordStdin bool
	var iterations int32
	c := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a SCRAM user, or set a new password for one",
		Args:  cobra.ExactArgs(1),
		Example: `  strand user create alice --password alice-secret
  echo "$PASSWORD" | strand user create alice --password-stdin --mechanism SCRAM-SHA-256 --mechanism SCRAM-SHA-512`,
	}
	c.Flags().StringArrayVar(&mechs, "mechanism", []string{"SCRAM-SHA-512"}, "SCRAM-SHA-256 or SCRAM-SHA-512 (repeatable)")
	c.Flags().StringVar(&password, "password", "", "the password (visible to other local users in the process list: prefer --password-stdin)")
	c.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from the first line of standard input")
	c.Flags().Int32Var(&iterations, "iterations", 8192, "SCRAM iterations (4096 to 16384)")
	c.RunE = e.run(func(ctx context.Context, args []string) error {
		if passwordStdin {
			if password != "" {
				return errors.New("give --password or --password-stdin, not both")
			}
			sc := bufio.NewScanner(e.in)
			if sc.Scan() {
				password = strings.TrimRight(sc.Text(), "\r")
			}
		}
		if password == "" {
			return errors.New("a password is required: --password or --password-stdin")
		}
		if iterations < 4096 || iterations > 16384 {
			return fmt.Errorf("--iterations %d: want 4096 to 16384", iterations)
		}
		var ups []kadm.UpsertSCRAM
		for _, m := range mechs {
			mech, err := parseMechanism(m)
			if err != nil {
				return err
			}
			ups = append(ups, kadm.UpsertSCRAM{User: args[0], Mechanism: mech, Iterations: iterations, Password: password})
		}
		adm, err := e.admin()
		if err != nil {
			return err
		}
		// KIP-554: a user may appear once per request, so one request a
		// mechanism.
		var out []UserResult
		for _, u := range ups {
			res, err := adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{u})
			if err != nil {
				return fmt.Errorf("create user %s: %w", args[0], err)
			}
			r := res[u.User]
			out = append(out, UserResult{u.User, u.Mechanism.String(), aclErr(r.Err, r.ErrMessage)})
		}
		return e.printUserResults(out, "created", "not created")
	})
	return c
}

// UserView is a SCRAM user and the credentials it has.
type UserView struct {
	User        string           `json:"user"`
	Credentials []UserCredential `json:"credentials"`
	Error       string           `json:"error,omitempty"`
}

// UserCredential is one mechanism's credential (never the secret itself).
type UserCredential struct {
	Mechanism  string `json:"mechanism"`
	Iterations int32  `json:"iterations"`
}

func userListCmd(e *env) *cobra.Command {
	c := &cobra.Command{Use: "list [NAME...]", Aliases: []string{"ls"}, Short: "List SCRAM users and their mechanisms (all, or the named ones)"}
	c.RunE = e.run(func(ctx context.Context, args []string) error {
		adm, err := e.admin()
		if err != nil {
			return err
		}
		res, err := adm.DescribeUserSCRAMs(ctx, args...)
		if err != nil {
			return fmt.Errorf("describe users: %w", err)
		}
		out := []UserView{}
		for _, d := range res.Sorted() {
			v := UserView{User: d.User, Credentials: []UserCredential{}, Error: aclErr(d.Err, d.ErrMessage)}
			for _, ci := range d.CredInfos {
				v.Credentials = append(v.Credentials, UserCredential{ci.Mechanism.String(), ci.Iterations})
			}
			out = append(out, v)
		}
		if e.json {
			if err := e.printJSON(out); err != nil {
				return err
			}
		} else {
			t := newTable(e.out, "USER", "MECHANISM", "ITERATIONS")
			for _, v := range out {
				if v.Error != "" {
					t.row(v.User, v.Error, "-")
				}
				for _, ci := range v.Credentials {
					t.row(v.User, ci.Mechanism, ci.Iterations)
				}
			}
			t.flush()
		}
		return failure("not described", out, func(v UserView) string { return v.Error })
	})
	return c
}

func userDeleteCmd(e *env) *cobra.Command {
	var mechs []string
	c := &cobra.Command{
		Use:     "delete NAME",
		Short:   "Delete a SCRAM user's credentials (every mechanism it has, or the --mechanism ones)",
		Args:    cobra.ExactArgs(1),
		Example: `  strand user delete alice`,
	}
	c.Flags().StringArrayVar(&mechs, "mechanism", nil, "only this mechanism's credential, SCRAM-SHA-256 or SCRAM-SHA-512 (repeatable)")
	c.RunE = e.run(func(ctx context.Context, args []string) error {
		user := args[0]
		var dels []kadm.DeleteSCRAM
		for _, m := range mechs {
			mech, err := parseMechanism(m)
			if err != nil {
				return err
			}
			dels = append(dels, kadm.DeleteSCRAM{User: user, Mechanism: mech})
		}
		adm, err := e.admin()
		if err != nil {
			return err
		}
		if len(dels) == 0 {
			res, err := adm.DescribeUserSCRAMs(ctx, user)
			if err != nil {
				return fmt.Errorf("describe user %s: %w", user, err)
			}
			d := res[user]
			if d.Err != nil {
				return fmt.Errorf("user %s: %s", user, aclErr(d.Err, d.ErrMessage))
			}
			for _, ci := range d.CredInfos {
				dels = append(dels, kadm.DeleteSCRAM{User: user, Mechanism: ci.Mechanism})
			}
			if len(dels) == 0 {
				return fmt.Errorf("user %s has no SCRAM credentials", user)
			}
		}
		var out []UserResult
		for _, d := range dels { // one request a mechanism, as create
			res, err := adm.AlterUserSCRAMs(ctx, []kadm.DeleteSCRAM{d}, nil)
			if err != nil {
				return fmt.Errorf("delete user %s: %w", user, err)
			}
			r := res[d.User]
			out = append(out, UserResult{d.User, d.Mechanism.String(), aclErr(r.Err, r.ErrMessage)})
		}
		return e.printUserResults(out, "deleted", "not deleted")
	})
	return c
}
