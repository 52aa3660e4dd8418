package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
)

const tasksUsage = `usage: flowgate tasks --url U [--tenant T] [--owner SUB] [--status S] [--limit N] [--json]
every task of the token's tenant, newest first, from the running gateway's admin API
(GET /v1/admin/tasks): --token-file F or $FLOWGATE_TOKEN holds a task:admin token (a
platform admin names --tenant). --url is the gateway's public base URL.`

// runTasks lists a tenant's tasks, all users', through the gateway (task:admin).
func runTasks(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help") {
		fmt.Fprintln(stdout, tasksUsage)
		return nil
	}
	fs := newFlagSet("tasks", stderr)
	var f swarmFlags
	var base, tenant, owner, status string
	var limit int
	var asJSON bool
	fs.StringVar(&base, "url", "", "the gateway's public base URL, e.g. http://127.0.0.1:8080 (required)")
	fs.StringVar(&tenant, "tenant", "", "the tenant (platform admins; default: the token's)")
	fs.StringVar(&owner, "owner", "", "only this user's tasks")
	fs.StringVar(&status, "status", "", "only tasks with this status (pending, running, success, failed, timeout, cancelled, interrupted)")
	fs.IntVar(&limit, "limit", 50, "at most this many (1 to 200)")
	fs.BoolVar(&asJSON, "json", false, "print the API's JSON answer")
	fs.StringVar(&f.tokenFile, "token-file", "", "read the token from this file (else $FLOWGATE_TOKEN)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if base == "" || fs.NArg() > 0 {
		return usageError("tasks needs --url (and no arguments)")
	}
	api, err := newAPIClient(base, f, getenv, stderr)
	if err != nil {
		return err
	}
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	for k, v := range map[string]string{"tenant": tenant, "owner": owner, "status": status} {
		if v != "" {
			q.Set(k, v)
		}
	}
	body, err := api.call(ctx, "GET", "/v1/admin/tasks?"+q.Encode())
	if err != nil {
		return err
	}
	var a struct {
		Tasks []struct {
			ID, Owner, Status, CreatedAt, Objective string
		}
		Next string
	}
	if done, err := printOrDecode(body, asJSON, stdout, &a); done || err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TASK\tOWNER\tSTATUS\tCREATED\tOBJECTIVE")
	for _, t := range a.Tasks {
		obj := []rune(strings.ReplaceAll(t.Objective, "\n", " "))
		if len(obj) > 60 {
			obj = append(obj[:59], '…')
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.ID, t.Owner, t.Status, t.CreatedAt, string(obj))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if a.Next != "" {
		fmt.Fprintln(stderr, "flowgate: more tasks: narrow with --owner/--status, or use the API's ?before="+a.Next)
	}
	return nil
}
