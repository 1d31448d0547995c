// Package cart is a package of the shopcart fixture's own module.
package cart

// Hello names the package.
func Hello() string { return "example.com/shop/cart" }
