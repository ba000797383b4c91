package cli

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ACL commands: create, list and delete ACL bindings (CreateAcls,
// DescribeAcls, DeleteAcls) with the flags of Kafka's kafka-acls.sh
// (--allow-principal, --deny-principal, --allow-host, --deny-host,
// --operation, --topic, --group, --cluster, --transactional-id,
// --delegation-token, --resource-pattern-type).

func aclCmd(e *env) *cobra.Command {
	c := &cobra.Command{Use: "acl", Short: "Create, list and delete ACLs (as kafka-acls.sh)"}
	c.AddCommand(aclCreateCmd(e), aclListCmd(e), aclDeleteCmd(e))
	return c
}

// aclFlags are the flags the ACL commands share.
type aclFlags struct {
	allow, deny           []string // principals, Type:Name
	allowHosts, denyHosts []string
	principals            []string // list: either permission
	ops                   []string
	topics, groups        []string
	txnIDs, tokens        []string
	cluster               bool
	pattern               string
}

func (f *aclFlags) register(c *cobra.Command, list bool, defaultPattern string) {
	fl := c.Flags()
	if list {
		fl.StringArrayVar(&f.principals, "principal", nil, "only bindings of this principal, Type:Name (repeatable)")
	} else {
		fl.StringArrayVar(&f.allow, "allow-principal", nil, "principal to allow, Type:Name as User:alice (repeatable)")
		fl.StringArrayVar(&f.deny, "deny-principal", nil, "principal to deny, Type:Name (repeatable)")
		fl.StringArrayVar(&f.allowHosts, "allow-host", nil, "host (IP) the allow applies to (repeatable; default every host, *)")
		fl.StringArrayVar(&f.denyHosts, "deny-host", nil, "host (IP) the deny applies to (repeatable; default every host, *)")
	}
	opHelp := "operation: Read, Write, Create, Delete, Alter, Describe, ClusterAction, DescribeConfigs, AlterConfigs, IdempotentWrite, All (repeatable"
	if list || c.Name() == "delete" {
		opHelp += "; default any)"
	} else {
		opHelp += "; default All)"
	}
	fl.StringArrayVar(&f.ops, "operation", nil, opHelp)
	fl.StringArrayVar(&f.topics, "topic", nil, "topic resource name, * for every topic (repeatable)")
	fl.StringArrayVar(&f.groups, "group", nil, "consumer group resource name (repeatable)")
	fl.StringArrayVar(&f.txnIDs, "transactional-id", nil, "transactional id resource name (repeatable)")
	fl.StringArrayVar(&f.tokens, "delegation-token", nil, "delegation token resource name (repeatable)")
	fl.BoolVar(&f.cluster, "cluster", false, "the cluster resource")
	fl.StringVar(&f.pattern, "resource-pattern-type", defaultPattern, "resource pattern type: literal or prefixed; list and delete also any or match")
}

func (f *aclFlags) hasResource() bool {
	return f.cluster || len(f.topics)+len(f.groups)+len(f.txnIDs)+len(f.tokens) > 0
}

// resources puts f's resources on b (only those given).
func (f *aclFlags) resources(b *kadm.ACLBuilder) {
	if len(f.topics) > 0 {
		b.Topics(f.topics...)
	}
	if len(f.groups) > 0 {
		b.Groups(f.groups...)
	}
	if len(f.txnIDs) > 0 {
		b.TransactionalIDs(f.txnIDs...)
	}
	if len(f.tokens) > 0 {
		b.DelegationTokens(f.tokens...)
	}
	if f.cluster {
		b.Clusters()
	}
}

func parseOps(names []string, def kadm.ACLOperation) ([]kadm.ACLOperation, error) {
	if len(names) == 0 {
		return []kadm.ACLOperation{def}, nil
	}
	var ops []kadm.ACLOperation
	for _, n := range names {
		op, err := kmsg.ParseACLOperation(n)
		if err != nil || op == kadm.OpUnknown {
			return nil, fmt.Errorf("--operation %q: want one of Read, Write, Create, Delete, Alter, Describe, ClusterAction, DescribeConfigs, AlterConfigs, IdempotentWrite, All", n)
		}
		ops = append(ops, op)
	}
	return ops, nil
}

func parsePattern(s string, filter bool) (kadm.ACLPattern, error) {
	p, err := kmsg.ParseACLResourcePatternType(s)
	ok := err == nil && (p == kadm.ACLPatternLiteral || p == kadm.ACLPatternPrefixed ||
		(filter && (p == kadm.ACLPatternAny || p == kadm.ACLPatternMatch)))
	if !ok {
		want := "literal or prefixed"
		if filter {
			want = "literal, prefixed, any or match"
		}
		return 0, fmt.Errorf("--resource-pattern-type %q: want %s", s, want)
	}
	return p, nil
}

func checkPrincipals(ps []string) error {
	for _, p := range ps {
		if typ, name, ok := strings.Cut(p, ":"); !ok || typ == "" || name == "" {
			return fmt.Errorf("principal %q: want Type:Name, as User:alice", p)
		}
	}
	return nil
}

// ACLView is one ACL binding as the commands print it.
type ACLView struct {
	Principal    string `json:"principal"`
	Host         string `json:"host"`
	Permission   string `json:"permission"`
	Operation    string `json:"operation"`
	ResourceType string `json:"resource_type"`
	ResourceName string `json:"resource_name"`
	PatternType  string `json:"pattern_type"`
	Error        string `json:"error,omitempty"`
}

func sortACLs(vs []ACLView) {
	sort.Slice(vs, func(i, j int) bool {
		a, b := vs[i], vs[j]
		ka := []string{a.ResourceType, a.ResourceName, a.PatternType, a.Principal, a.Host, a.Permission, a.Operation}
		kb := []string{b.ResourceType, b.ResourceName, b.PatternType, b.Principal, b.Host, b.Permission, b.Operation}
		for k := range ka {
			if ka[k] != kb[k] {
				return ka[k] < kb[k]
			}
		}
		return false
	})
}

func (e *env) printACLs(vs []ACLView, status string) error {
	sortACLs(vs)
	if e.json {
		if vs == nil {
			vs = []ACLView{}
		}
		return e.printJSON(vs)
	}
	header := []string{"PRINCIPAL", "HOST", "PERMISSION", "OPERATION", "RESOURCE-TYPE", "RESOURCE-NAME", "PATTERN"}
	if status != "" {
		header = append(header, "STATUS")
	}
	t := newTable(e.out, header...)
	for _, v := range vs {
		cols := []any{v.Principal, v.Host, v.Permission, v.Operation, v.ResourceType, v.ResourceName, v.PatternType}
		if status != "" {
			cols = append(cols, orStatus(v.Error, status))
		}
		t.row(cols...)
	}
	return t.flush()
}

func aclCreateCmd(e *env) *cobra.Command {
	var f aclFlags
	c := &cobra.Command{
		Use:   "create",
		Short: "Create ACL bindings: each principal × host × operation × resource",
		Args:  cobra.NoArgs,
		Example: `  strand acl create --allow-principal User:alice --operation Read --operation Write --topic orders
  strand acl create --allow-principal User:app --operation Read --group app- --resource-pattern-type prefixed
  strand acl create --deny-principal User:mallory --deny-host 10.0.0.9 --operation All --topic '*'`,
	}
	f.register(c, false, "literal")
	c.RunE = e.run(func(ctx context.Context, _ []string) error {
		if len(f.allow)+len(f.deny) == 0 {
			return errors.New("give --allow-principal or --deny-principal")
		}
		if !f.hasResource() {
			return errors.New("give a resource: --topic, --group, --cluster, --transactional-id or --delegation-token")
		}
		if len(f.allowHosts) > 0 && len(f.allow) == 0 || len(f.denyHosts) > 0 && len(f.deny) == 0 {
			return errors.New("--allow-host needs --allow-principal and --deny-host needs --deny-principal")
		}
		if err := checkPrincipals(slicesConcat(f.allow, f.deny)); err != nil {
			return err
		}
		ops, err := parseOps(f.ops, kadm.OpAll)
		if err != nil {
			return err
		}
		pattern, err := parsePattern(f.pattern, false)
		if err != nil {
			return err
		}
		b := kadm.NewACLs().MaybeAllow(f.allow...).MaybeAllowHosts(f.allowHosts...).
			MaybeDeny(f.deny...).MaybeDenyHosts(f.denyHosts...).Operations(ops...).ResourcePatternType(pattern)
		f.resources(b)
		if err := b.ValidateCreate(); err != nil {
			return err
		}
		adm, err := e.admin()
		if err != nil {
			return err
		}
		res, err := adm.CreateACLs(ctx, b)
		if err != nil {
			return fmt.Errorf("create acls: %w", err)
		}
		var out []ACLView
		for _, r := range res {
			out = append(out, ACLView{r.Principal, r.Host, r.Permission.String(), r.Operation.String(),
				r.Type.String(), r.Name, r.Pattern.String(), aclErr(r.Err, r.ErrMessage)})
		}
		if err := e.printACLs(out, "created"); err != nil {
			return err
		}
		return failure("not created", out, func(v ACLView) string { return v.Error })
	})
	return c
}

func slicesConcat(a, b []string) []string { return append(append([]string(nil), a...), b...) }

func aclErr(err error, msg string) string {
	s := kafkaErr(err)
	if s != "" && msg != "" && !strings.Contains(s, msg) {
		s += " (" + msg + ")"
	}
	return s
}

// filter builds a DescribeAcls / DeleteAcls filter from f: principals of
// either permission (list's --principal), or only those given with
// --allow-principal / --deny-principal; every resource when none is given.
func (f *aclFlags) filter() (*kadm.ACLBuilder, error) {
	ops, err := parseOps(f.ops, kadm.OpAny)
	if err != nil {
		return nil, err
	}
	pattern, err := parsePattern(f.pattern, true)
	if err != nil {
		return nil, err
	}
	if err := checkPrincipals(slicesConcat(slicesConcat(f.allow, f.deny), f.principals)); err != nil {
		return nil, err
	}
	b := kadm.NewACLs().Operations(ops...).ResourcePatternType(pattern)
	switch {
	case len(f.principals) > 0:
		b.Allow(f.principals...).AllowHosts().Deny(f.principals...).DenyHosts()
	case len(f.allow)+len(f.deny) == 0:
		b.Allow().AllowHosts().Deny().DenyHosts()
	default:
		if len(f.allow) > 0 {
			b.Allow(f.allow...).AllowHosts(f.allowHosts...)
		}
		if len(f.deny) > 0 {
			b.Deny(f.deny...).DenyHosts(f.denyHosts...)
		}
	}
	if f.hasResource() {
		f.resources(b)
	} else {
		b.AnyResource()
	}
	return b, b.ValidateFilter()
}

func aclListCmd(e *env) *cobra.Command {
	var f aclFlags
	c := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List ACL bindings (all, or those matching the flags)",
		Args:    cobra.NoArgs,
		Example: `  strand acl list
  strand acl list --principal User:alice
  strand acl list --topic orders --resource-pattern-type match   # every binding that applies to orders`,
	}
	f.register(c, true, "any")
	c.RunE = e.run(func(ctx context.Context, _ []string) error {
		b, err := f.filter()
		if err != nil {
			return err
		}
		adm, err := e.admin()
		if err != nil {
			return err
		}
		res, err := adm.DescribeACLs(ctx, b)
		if err != nil {
			return fmt.Errorf("describe acls: %w", err)
		}
		var out []ACLView
		seen := map[ACLView]bool{} // several filters may match one binding
		for _, r := range res {
			if r.Err != nil {
				return fmt.Errorf("describe acls: %s", aclErr(r.Err, r.ErrMessage))
			}
			for _, d := range r.Described {
				v := ACLView{d.Principal, d.Host, d.Permission.String(), d.Operation.String(), d.Type.String(), d.Name, d.Pattern.String(), ""}
				if !seen[v] {
					seen[v] = true
					out = append(out, v)
				}
			}
		}
		return e.printACLs(out, "")
	})
	return c
}

func aclDeleteCmd(e *env) *cobra.Command {
	var f aclFlags
	c := &cobra.Command{
		Use:   "delete",
		Short: "Delete the ACL bindings matching the flags (a resource is required)",
		Args:  cobra.NoArgs,
		Example: `  strand acl delete --allow-principal User:alice --operation Write --topic orders
  strand acl delete --topic orders   # every binding on the literal resource orders`,
	}
	f.register(c, false, "literal")
	c.RunE = e.run(func(ctx context.Context, _ []string) error {
		if !f.hasResource() {
			return errors.New("give a resource: --topic, --group, --cluster, --transactional-id or --delegation-token")
		}
		b, err := f.filter()
		if err != nil {
			return err
		}
		adm, err := e.admin()
		if err != nil {
			return err
		}
		res, err := adm.DeleteACLs(ctx, b)
		if err != nil {
			return fmt.Errorf("delete acls: %w", err)
		}
		var out []ACLView
		seen := map[ACLView]bool{}
		for _, r := range res {
			if r.Err != nil {
				return fmt.Errorf("delete acls: %s", aclErr(r.Err, r.ErrMessage))
			}
			for _, d := range r.Deleted {
				v := ACLView{d.Principal, d.Host, d.Permission.String(), d.Operation.String(), d.Type.String(), d.Name, d.Pattern.String(), aclErr(d.Err, d.ErrMessage)}
				if !seen[v] {
					seen[v] = true
					out = append(out, v)
				}
			}
		}
		if err := e.printACLs(out, "deleted"); err != nil {
			return err
		}
		return failure("not deleted", out, func(v ACLView) string { return v.Error })
	})
	return c
}
