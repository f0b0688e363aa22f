package main

import (
	"time"

	"github.com/spf13/pflag"

	"github.com/kpush/kpush/push"
)

// androidFlags are the message's FCM-only settings (the JSON "android"
// object), shared by kpush push and kpush enqueue.
type androidFlags struct {
	priority, collapseKey, channelID, sound, tag, image string
	ttl                                                 time.Duration
}

func (a *androidFlags) register(f *pflag.FlagSet) {
	f.StringVar(&a.priority, "android-priority", "", "FCM Android priority: high or normal (default FCM's)")
	f.DurationVar(&a.ttl, "android-ttl", 0, "FCM Android time to live, 0 to 672h (28 days); unset: FCM's default")
	f.StringVar(&a.collapseKey, "android-collapse-key", "", "FCM Android collapse key")
	f.StringVar(&a.channelID, "android-channel-id", "", "Android notification channel id")
	f.StringVar(&a.sound, "android-sound", "", `Android notification sound ("default" or a resource name)`)
	f.StringVar(&a.tag, "android-tag", "", "Android notification tag (a newer notification with the same tag replaces it)")
	f.StringVar(&a.image, "android-image", "", "Android notification image URL")
}

// message is the "android" object the flags set, nil when none was given.
func (a *androidFlags) message(f *pflag.FlagSet) *push.Android {
	m := &push.Android{Priority: a.priority, CollapseKey: a.collapseKey, ChannelID: a.channelID, Sound: a.sound, Tag: a.tag, Image: a.image}
	if f.Changed("android-ttl") {
		m.TTL = &push.TTL{Duration: a.ttl}
	}
	if *m == (push.Android{}) {
		return nil
	}
	return m
}
