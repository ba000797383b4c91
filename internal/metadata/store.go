package metadata

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"strand/internal/atomicfile"
)

// CreateTopic describes a topic to create.
type CreateTopic struct {
	Name              string
	Partitions        int32
	ReplicationFactor int16
	// Assignment, when non-nil, gives each partition's replicas explicitly and
	// overrides Partitions and ReplicationFactor.
	Assignment [][]int32
	Configs    map[string]string
	Internal   bool
}

// Store owns the cluster metadata and applies changes to it. Every change is
// durable when the method returns, and listeners registered with OnChange have
// seen the new Image.
type Store interface {
	// Image returns the current image. It must not be modified.
	Image() *Image
	CreateTopic(ctx context.Context, c CreateTopic) (*Topic, error)
	DeleteTopic(ctx context.Context, name string) (*Topic, error)
	// CreatePartitions grows a topic to count partitions.
	CreatePartitions(ctx context.Context, name string, count int32, assignment [][]int32) error
	// SetTopicConfigs replaces a topic's config overrides.
	SetTopicConfigs(ctx context.Context, name string, configs map[string]string) error
	// OnChange registers fn to be called, serially and in order, with each newly
	// published image (and once at registration with the current one).
	OnChange(fn func(*Image))
}

// LocalStore is the single-node Store: the image lives in one JSON file,
// replaced atomically (write, fsync, rename, fsync dir) on every change. The
// node is the only broker and the controller.
type LocalStore struct {
	path string

	mu        sync.Mutex // guards img, listeners; held while listeners run so they see changes in order
	img       *Image
	listeners []func(*Image)
}

// OpenLocal loads (or creates) the store in dir for a node advertised as self.
func OpenLocal(dir string, self Broker, newClusterID func() string) (*LocalStore, error) {
	s := &LocalStore{path: filepath.Join(dir, "metadata.json")}
	b, err := os.ReadFile(s.path)
	switch {
	case err == nil:
		img := &Image{}
		if err := json.Unmarshal(b, img); err != nil {
			return nil, fmt.Errorf("metadata %s: %w", s.path, err)
		}
		if img.Topics == nil {
			img.Topics = map[string]*Topic{}
		}
		s.img = img
	case os.IsNotExist(err):
		s.img = &Image{ClusterID: newClusterID(), Topics: map[string]*Topic{}}
	default:
		return nil, fmt.Errorf("metadata: %w", err)
	}
	// The node's address may change between runs; it is always the only broker.
	s.img.Brokers = []Broker{self}
	s.img.ControllerID = self.ID
	for _, t := range s.img.Topics {
		for i := range t.Partitions {
			t.Partitions[i].Leader = self.ID
			t.Partitions[i].Replicas = []int32{self.ID}
			t.Partitions[i].ISR = []int32{self.ID}
		}
	}
	s.img.index()
	if err := s.save(s.img); err != nil {
		return nil, err
	}
	return s, nil
}

// Image implements Store.
func (s *LocalStore) Image() *Image {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.img
}

// OnChange implements Store.
func (s *LocalStore) OnChange(fn func(*Image)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listeners = append(s.listeners, fn)
	fn(s.img)
}

// update applies fn to a copy of the image and publishes it durably.
func (s *LocalStore) update(fn func(*Image) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.img.clone()
	if err := fn(next); err != nil {
		return err
	}
	next.index()
	if err := s.save(next); err != nil {
		return err
	}
	s.img = next
	for _, l := range s.listeners {
		l(next)
	}
	return nil
}

func (s *LocalStore) save(img *Image) error {
	b, err := json.MarshalIndent(img, "", " ")
	if err != nil {
		return fmt.Errorf("metadata: encode: %w", err)
	}
	return atomicfile.Write(s.path, b)
}

// CreateTopic implements Store.
func (s *LocalStore) CreateTopic(_ context.Context, c CreateTopic) (*Topic, error) {
	var created *Topic
	err := s.update(func(img *Image) error {
		if err := ValidateTopicName(c.Name); err != nil {
			return err
		}
		if _, ok := img.Topics[c.Name]; ok {
			return fmt.Errorf("%w: %s", ErrTopicExists, c.Name)
		}
		assign, err := assignment(img, c.Partitions, c.ReplicationFactor, c.Assignment, 0)
		if err != nil {
			return err
		}
		t := &Topic{Name: c.Name, ID: NewTopicID(), Configs: c.Configs, Internal: c.Internal}
		for i, reps := range assign {
			t.Partitions = append(t.Partitions, Partition{Index: int32(i), Leader: reps[0], Replicas: reps, ISR: append([]int32(nil), reps...)})
		}
		img.Topics[c.Name] = t
		created = t
		return nil
	})
	return created, err
}

// assignment validates or computes replica lists for partitions [from, from+count).
func assignment(img *Image, count int32, rf int16, explicit [][]int32, from int32) ([][]int32, error) {
	live := map[int32]bool{}
	for _, b := range img.Brokers {
		live[b.ID] = true
	}
	if explicit != nil {
		for i, reps := range explicit {
			if len(reps) == 0 {
				return nil, fmt.Errorf("%w: partition %d has no replicas", ErrInvalidAssignment, int(from)+i)
			}
			seen := map[int32]bool{}
			for _, r := range reps {
				if !live[r] {
					return nil, fmt.Errorf("%w: partition %d names unknown broker %d", ErrInvalidAssignment, int(from)+i, r)
				}
				if seen[r] {
					return nil, fmt.Errorf("%w: partition %d names broker %d twice", ErrInvalidAssignment, int(from)+i, r)
				}
				seen[r] = true
			}
		}
		return explicit, nil
	}
	if count < 1 {
		return nil, fmt.Errorf("%w: %d (must be at least 1)", ErrInvalidPartitions, count)
	}
	if rf < 1 || int(rf) > len(img.Brokers) {
		return nil, fmt.Errorf("%w: %d with %d broker(s)", ErrInvalidReplication, rf, len(img.Brokers))
	}
	out := make([][]int32, count)
	for p := int32(0); p < count; p++ {
		for r := 0; r < int(rf); r++ {
			out[p] = append(out[p], img.Brokers[(int(from+p)+r)%len(img.Brokers)].ID)
		}
	}
	return out, nil
}

// DeleteTopic implements Store.
func (s *LocalStore) DeleteTopic(_ context.Context, name string) (*Topic, error) {
	var deleted *Topic
	err := s.update(func(img *Image) error {
		t, ok := img.Topics[name]
		if !ok {
			return fmt.Errorf("%w: %s", ErrUnknownTopic, name)
		}
		delete(img.Topics, name)
		deleted = t
		return nil
	})
	return deleted, err
}

// CreatePartitions implements Store.
func (s *LocalStore) CreatePartitions(_ context.Context, name string, count int32, explicit [][]int32) error {
	return s.update(func(img *Image) error {
		t, ok := img.Topics[name]
		if !ok {
			return fmt.Errorf("%w: %s", ErrUnknownTopic, name)
		}
		have := int32(len(t.Partitions))
		if count <= have {
			return fmt.Errorf("%w: topic %s has %d partitions; the new count %d must be larger", ErrInvalidPartitions, name, have, count)
		}
		if explicit != nil && len(explicit) != int(count-have) {
			return fmt.Errorf("%w: %d assignments for %d new partitions", ErrInvalidAssignment, len(explicit), count-have)
		}
		assign, err := assignment(img, count-have, int16(len(t.Partitions[0].Replicas)), explicit, have)
		if err != nil {
			return err
		}
		for i, reps := range assign {
			t.Partitions = append(t.Partitions, Partition{Index: have + int32(i), Leader: reps[0], Replicas: reps, ISR: append([]int32(nil), reps...)})
		}
		return nil
	})
}

// SetTopicConfigs implements Store.
func (s *LocalStore) SetTopicConfigs(_ context.Context, name string, configs map[string]string) error {
	return s.update(func(img *Image) error {
		t, ok := img.Topics[name]
		if !ok {
			return fmt.Errorf("%w: %s", ErrUnknownTopic, name)
		}
		t.Configs = configs
		return nil
	})
}
