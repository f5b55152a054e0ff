package flash

import (
	"fmt"
	"io"
	"strings"

	"github.com/phonefarm/phonefarm/devicedb"
)

// Unlock is what unlocking a phone's bootloader takes for its
// manufacturer, and whether phonefarm can do it.
type Unlock struct {
	Manufacturer string `json:"manufacturer"`
	// Outlook says how likely unlocking is to work.
	Outlook string `json:"outlook"`
	// Prepare lists what to do on the phone (in Android) beforehand.
	Prepare []string `json:"prepare,omitempty"`
	// Command is the fastboot command phonefarm sends; CODE stands for the
	// vendor's unlock code. Empty when phonefarm cannot unlock this phone.
	Command string `json:"command,omitempty"`
	// NeedsCode says Command needs an unlock code from the vendor.
	NeedsCode bool `json:"needs_code,omitempty"`
	// OnPhone is the physical step after the command is sent.
	OnPhone string `json:"on_phone,omitempty"`
}

// Automatic reports whether phonefarm can send the unlock command.
func (u Unlock) Automatic() bool { return u.Command != "" }

const (
	devOptions   = "In Android: Settings > About phone, tap Build number seven times to enable Developer options."
	oemUnlocking = "In Settings > System > Developer options, turn on OEM unlocking (it needs a network connection; greyed out means a carrier-locked phone)."
	volumeKeys   = "On the phone: press volume up or down until the screen offers to unlock the bootloader, then press power to confirm."
)

// UnlockGuide returns the unlock guidance for dev.
func UnlockGuide(dev devicedb.Device) Unlock {
	m := strings.ToLower(dev.Manufacturer)
	u := Unlock{Manufacturer: dev.Manufacturer}
	switch {
	case m == "google":
		u.Outlook = "works on Pixel and Nexus phones bought unlocked; carrier (Verizon) Pixels cannot be unlocked"
		u.Prepare = []string{devOptions, oemUnlocking}
		u.Command = "flashing unlock"
		if dev.Year > 0 && dev.Year < 2015 {
			u.Command = "oem unlock"
		}
		u.OnPhone = volumeKeys
	case m == "oneplus":
		u.Outlook = "works: OnePlus allows unlocking without a code"
		u.Prepare = []string{devOptions, oemUnlocking}
		u.Command = "flashing unlock"
		if dev.Year > 0 && dev.Year < 2017 {
			u.Command = "oem unlock"
		}
		u.OnPhone = volumeKeys
	case m == "fairphone":
		u.Outlook = "works; the Fairphone 3 and later need the unlock code from Fairphone's website (entered in Developer options)"
		u.Prepare = []string{devOptions, "Get the unlock code for the phone's IMEI and serial number from fairphone.com, then turn on OEM unlocking in Developer options and enter the code.", oemUnlocking}
		u.Command = "flashing unlock"
		u.OnPhone = volumeKeys
	case m == "sony" || m == "sony ericsson":
		u.Outlook = "works for most models: Sony's developer site gives an unlock code for the IMEI (dial *#06#); some carrier models cannot be unlocked (*#*#7378423#*#* > Service info > Configuration says 'Bootloader unlock allowed: Yes')"
		u.Prepare = []string{devOptions, oemUnlocking, "Request the unlock code for the phone's IMEI at developer.sony.com (Unlock bootloader)."}
		u.Command = "oem unlock CODE"
		u.NeedsCode = true
		u.OnPhone = "Nothing to press: the phone unlocks and wipes itself when the code is right."
	case m == "motorola":
		u.Outlook = "works for most retail models: Motorola emails an unlock code; carrier models are usually refused"
		u.Prepare = []string{devOptions, oemUnlocking, "Run `fastboot oem get_unlock_data`, join the lines and submit them on Motorola's bootloader unlock page to get the code by email."}
		u.Command = "oem unlock CODE"
		u.NeedsCode = true
		u.OnPhone = "Run the unlock again if the phone asks for confirmation; it wipes itself when the code is accepted."
	case m == "xiaomi" || m == "redmi" || m == "poco":
		u.Outlook = "possible but not automatable: the phone must be bound to a Mi account and Xiaomi imposes a wait of 7 to 30 days (longer for some regions) before its Mi Unlock tool (Windows) unlocks it"
		u.Prepare = []string{devOptions, oemUnlocking, "In Developer options > Mi Unlock status, add the phone to a Mi account (SIM card and mobile data needed).", "Wait for the period Xiaomi announces, then unlock with the Mi Unlock tool and run phonefarm again."}
	case m == "huawei" || m == "honor":
		u.Outlook = "not possible: Huawei and Honor stopped issuing bootloader unlock codes in 2018, and there is no official way to unlock"
	case m == "samsung" && !dev.Fastboot():
		u.Outlook = "Samsung phones have no fastboot: turn on OEM unlocking, then boot to download mode and flash with heimdall"
		u.Prepare = []string{devOptions, oemUnlocking + " Samsung phones sold in the USA and Canada cannot be unlocked.", "Boot to download mode: power off, then hold volume down + home (or Bixby) + power, and press volume up to continue."}
	default:
		u.Outlook = "unknown for this manufacturer: many accept the standard unlock command, some need a vendor tool or code"
		u.Prepare = []string{devOptions, oemUnlocking}
		u.Command = "flashing unlock"
		u.OnPhone = volumeKeys
	}
	return u
}

// WipeWarning is shown before an unlock is sent.
const WipeWarning = "WARNING: unlocking the bootloader erases everything on the phone (a factory reset), and flashing postmarketOS replaces Android."

// Explain writes the guidance for a locked phone.
func (u Unlock) Explain(w io.Writer, phone string) {
	fmt.Fprintf(w, "The bootloader of %s is locked. Unlocking a %s phone: %s.\n", phone, u.Manufacturer, u.Outlook)
	if len(u.Prepare) > 0 {
		fmt.Fprintln(w, "Before unlocking:")
		for i, s := range u.Prepare {
			fmt.Fprintf(w, "  %d. %s\n", i+1, s)
		}
	}
	if !u.Automatic() {
		return
	}
	fmt.Fprintf(w, "phonefarm will send `fastboot %s`.\n", u.Command)
	if u.OnPhone != "" {
		fmt.Fprintf(w, "Then: %s\n", u.OnPhone)
	}
	fmt.Fprintln(w, WipeWarning)
}
