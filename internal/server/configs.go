package server

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"strand/internal/config"
	"strand/internal/metadata"
)

// Config resource types.
const (
	resourceTopic  = 2
	resourceBroker = 4
)

func (s *Server) handleDescribeConfigs(req *kmsg.DescribeConfigsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DescribeConfigsResponse)
	for _, rr := range req.Resources {
		out := kmsg.NewDescribeConfigsResponseResource()
		out.ResourceType, out.ResourceName = rr.ResourceType, rr.ResourceName
		want := func(name string) bool {
			if rr.ConfigNames == nil {
				return true
			}
			for _, n := range rr.ConfigNames {
				if n == name {
					return true
				}
			}
			return false
		}
		switch rr.ResourceType {
		case resourceTopic:
			t, ok := s.store.Image().Topic(rr.ResourceName)
			if !ok {
				out.ErrorCode = kerr.UnknownTopicOrPartition.Code
				out.ErrorMessage = kmsg.StringPtr("unknown topic " + rr.ResourceName)
				break
			}
			tc := s.dyn().TopicConfig(t.Configs)
			for _, d := range config.TopicDefs() {
				if !want(d.Name) {
					continue
				}
				v, src := tc.Value(d.Name)
				c := configEntry(d, v, src, req.IncludeDocumentation)
				if req.IncludeSynonyms {
					c.ConfigSynonyms = topicSynonyms(s.cfg, t.Configs, d)
				}
				out.Configs = append(out.Configs, c)
			}
		case resourceBroker:
			if rr.ResourceName != "" && rr.ResourceName != strconv.Itoa(int(s.cfg.NodeID())) {
				out.ErrorCode = kerr.InvalidRequest.Code
				out.ErrorMessage = kmsg.StringPtr("broker " + rr.ResourceName + " is not this node")
				break
			}
			b := s.dyn()
			for _, d := range config.BrokerDefs() {
				if !want(d.Name) {
					continue
				}
				out.Configs = append(out.Configs, configEntry(d, b.String(d.Name), b.Source(d.Name), req.IncludeDocumentation))
			}
		default:
			out.ErrorCode = kerr.InvalidRequest.Code
			out.ErrorMessage = kmsg.StringPtr(fmt.Sprintf("resource type %d is not supported", rr.ResourceType))
		}
		resp.Resources = append(resp.Resources, out)
	}
	return resp
}

func configEntry(d *config.Def, v string, src config.Source, doc bool) kmsg.DescribeConfigsResponseResourceConfig {
	c := kmsg.NewDescribeConfigsResponseResourceConfig()
	c.Name = d.Name
	c.Value = kmsg.StringPtr(v)
	c.ReadOnly = d.ReadOnly
	c.IsDefault = src == config.SourceDefault
	c.Source = kmsg.ConfigSource(src)
	c.IsSensitive = d.Sensitive
	c.ConfigType = kmsg.ConfigType(d.Type)
	if d.Sensitive {
		c.Value = nil
	}
	if doc && d.Doc != "" {
		c.Documentation = kmsg.StringPtr(d.Doc)
	}
	return c
}

func topicSynonyms(b *config.Broker, overrides map[string]string, d *config.Def) []kmsg.DescribeConfigsResponseResourceConfigConfigSynonym {
	var out []kmsg.DescribeConfigsResponseResourceConfigConfigSynonym
	if v, ok := overrides[d.Name]; ok {
		out = append(out, kmsg.DescribeConfigsResponseResourceConfigConfigSynonym{Name: d.Name, Value: kmsg.StringPtr(v), Source: kmsg.ConfigSource(config.SourceDynamicTopic)})
	}
	return append(out, kmsg.DescribeConfigsResponseResourceConfigConfigSynonym{Name: d.Broker, Value: kmsg.StringPtr(b.String(d.Broker)), Source: kmsg.ConfigSource(b.Source(d.Broker))})
}

// describeTopicConfigsForCreate lists a new topic's effective configs (CreateTopics v5+).
func describeTopicConfigsForCreate(tc config.Topic) []kmsg.CreateTopicsResponseTopicConfig {
	var out []kmsg.CreateTopicsResponseTopicConfig
	for _, d := range config.TopicDefs() {
		v, src := tc.Value(d.Name)
		c := kmsg.NewCreateTopicsResponseTopicConfig()
		c.Name, c.Value, c.ReadOnly, c.Source, c.IsSensitive = d.Name, kmsg.StringPtr(v), d.ReadOnly, int8(src), d.Sensitive
		out = append(out, c)
	}
	return out
}

// alterTopic validates and (unless validateOnly) stores a topic's new override set.
func (s *Server) alterTopic(ctx context.Context, name string, next map[string]string, validateOnly bool) error {
	if err := config.ValidateTopicConfigs(next); err != nil {
		return fmt.Errorf("%w: %v", metadata.ErrInvalidConfig, err)
	}
	if validateOnly {
		return nil
	}
	if err := s.store.SetTopicConfigs(ctx, name, next); err != nil {
		return err
	}
	s.logger.Info("altered topic configs", "topic", name, "configs", next)
	return nil
}

// alterCluster validates and commits new cluster-wide dynamic configs. Only
// the cluster default (empty resource name) is supported; per-broker dynamic
// configs are not.
func (s *Server) alterCluster(ctx context.Context, name string, next map[string]string, validateOnly bool) error {
	if name != "" {
		return fmt.Errorf("%w: per-broker dynamic configs are not supported; alter the cluster default (empty broker name)", metadata.ErrInvalidConfig)
	}
	for k, v := range next {
		if err := config.ValidateDynamic(k, v); err != nil {
			return fmt.Errorf("%w: %v", metadata.ErrInvalidConfig, err)
		}
	}
	if validateOnly {
		return nil
	}
	return s.store.SetClusterConfigs(ctx, next)
}

func (s *Server) handleAlterConfigs(ctx context.Context, req *kmsg.AlterConfigsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.AlterConfigsResponse)
	for _, rr := range req.Resources {
		out := kmsg.NewAlterConfigsResponseResource()
		out.ResourceType, out.ResourceName = rr.ResourceType, rr.ResourceName
		var err error
		switch rr.ResourceType {
		case resourceTopic:
			if _, ok := s.store.Image().Topic(rr.ResourceName); !ok {
				err = fmt.Errorf("%w: %s", metadata.ErrUnknownTopic, rr.ResourceName)
				break
			}
			next := map[string]string{}
			for _, c := range rr.Configs {
				if c.Value != nil {
					next[c.Name] = *c.Value
				}
			}
			err = s.alterTopic(ctx, rr.ResourceName, next, req.ValidateOnly)
		case resourceBroker:
			next := map[string]string{}
			for _, c := range rr.Configs {
				if c.Value != nil {
					next[c.Name] = *c.Value
				}
			}
			err = s.alterCluster(ctx, rr.ResourceName, next, req.ValidateOnly)
		default:
			err = fmt.Errorf("%w: resource type %d is not supported", metadata.ErrInvalidConfig, rr.ResourceType)
		}
		out.ErrorCode, out.ErrorMessage = errorCode(err), errorMessage(err)
		resp.Resources = append(resp.Resources, out)
	}
	return resp
}

// Incremental alter operations.
const (
	opSet      = 0
	opDelete   = 1
	opAppend   = 2
	opSubtract = 3
)

func (s *Server) handleIncrementalAlterConfigs(ctx context.Context, req *kmsg.IncrementalAlterConfigsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	for _, rr := range req.Resources {
		out := kmsg.NewIncrementalAlterConfigsResponseResource()
		out.ResourceType, out.ResourceName = rr.ResourceType, rr.ResourceName
		var err error
		switch rr.ResourceType {
		case resourceTopic:
			t, ok := s.store.Image().Topic(rr.ResourceName)
			if !ok {
				err = fmt.Errorf("%w: %s", metadata.ErrUnknownTopic, rr.ResourceName)
				break
			}
			next := map[string]string{}
			for k, v := range t.Configs {
				next[k] = v
			}
			tc := s.dyn().TopicConfig(t.Configs)
			for _, c := range rr.Configs {
				if err = applyIncremental(next, tc, c); err != nil {
					break
				}
			}
			if err == nil {
				err = s.alterTopic(ctx, rr.ResourceName, next, req.ValidateOnly)
			}
		case resourceBroker:
			next := map[string]string{}
			for k, v := range s.store.Image().ClusterConfigs {
				next[k] = v
			}
			for _, c := range rr.Configs {
				switch {
				case c.Op == opSet && c.Value != nil:
					next[c.Name] = *c.Value
				case c.Op == opDelete:
					delete(next, c.Name)
				default:
					err = fmt.Errorf("%w: operation %d on broker config %s is not supported", metadata.ErrInvalidConfig, c.Op, c.Name)
				}
			}
			if err == nil {
				err = s.alterCluster(ctx, rr.ResourceName, next, req.ValidateOnly)
			}
		default:
			err = fmt.Errorf("%w: resource type %d is not supported", metadata.ErrInvalidConfig, rr.ResourceType)
		}
		out.ErrorCode, out.ErrorMessage = errorCode(err), errorMessage(err)
		resp.Resources = append(resp.Resources, out)
	}
	return resp
}

func applyIncremental(next map[string]string, tc config.Topic, c kmsg.IncrementalAlterConfigsRequestResourceConfig) error {
	d, ok := config.TopicDef(c.Name)
	if !ok {
		return fmt.Errorf("%w: unknown topic config %q", metadata.ErrInvalidConfig, c.Name)
	}
	val := ""
	if c.Value != nil {
		val = *c.Value
	}
	switch c.Op {
	case opSet:
		if c.Value == nil {
			return fmt.Errorf("%w: %s: SET needs a value", metadata.ErrInvalidConfig, c.Name)
		}
		next[c.Name] = val
	case opDelete:
		delete(next, c.Name)
	case opAppend, opSubtract:
		if d.Type != config.TypeList {
			return fmt.Errorf("%w: %s is not a list", metadata.ErrInvalidConfig, c.Name)
		}
		cur := strings.Split(tc.String(c.Name), ",")
		var items []string
		for _, it := range cur {
			if it = strings.TrimSpace(it); it != "" && !(c.Op == opSubtract && it == val) {
				items = append(items, it)
			}
		}
		if c.Op == opAppend && !containsString(items, val) {
			items = append(items, val)
		}
		next[c.Name] = strings.Join(items, ",")
	default:
		return fmt.Errorf("%w: unknown operation %d", metadata.ErrInvalidConfig, c.Op)
	}
	return nil
}

func containsString(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
