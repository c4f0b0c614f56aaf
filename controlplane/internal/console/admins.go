package console

import "github.com/labstack/echo/v4"

// registerAdmins serves the admin identity pages under g.
func (c *Console) registerAdmins(g *echo.Group) {}
