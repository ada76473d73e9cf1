// Package server implements a tiny HTTP server.
package server

import (
	"fmt"
	"net/http"
)

// Server serves greetings.
type Server struct {
	addr  string
	count int
}

// Handler is anything that can greet.
type Handler interface {
	Greet(name string) string
}

// New returns a server listening on addr.
func New(addr string) *Server {
	return &Server{addr: addr}
}

// Handle answers one request.
func (s *Server) Handle(w http.ResponseWriter, r *http.Request) {
	s.count++
	name := r.URL.Query().Get("name")
	if name == "" {
		name = "world"
	}
	fmt.Fprintf(w, "%s (#%d)\n", s.Greet(name), s.count)
}

// Greet builds the greeting.
func (s Server) Greet(name string) string {
	return "hello, " + name
}

func main() {
	s := New(":8080")
	http.HandleFunc("/", s.Handle)
	_ = http.ListenAndServe(s.addr, nil)
}
